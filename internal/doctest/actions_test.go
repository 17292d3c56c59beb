package doctest

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/upshift-dev/upshift/schema"
)

// TestDocsListStandardActions: the hand-written lists of each kind's
// standard actions (README's paragraph, plugins.md's table) name every
// action of the contract in package schema. language.md's full tables are
// generated (go test ./schema -update-docs); these short lists were not,
// and fell behind when metrics and preflight were added.
func TestDocsListStandardActions(t *testing.T) {
	kinds := []schema.Kind{schema.KindLoadBalancer, schema.KindDatabase, schema.KindNodePool}
	readme := paragraph(t, root+"/README.md", "Each kind of plugin has a fixed set of standard actions")
	for _, k := range kinds {
		for _, name := range contractNames(k) {
			if !strings.Contains(readme, "`"+name+"`") {
				t.Errorf("README.md: the paragraph on standard actions does not name %s's %q", k, name)
			}
		}
	}
	b, err := os.ReadFile(root + "/docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		row := ""
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "| `"+string(k)+"` |") {
				row = line
			}
		}
		if row == "" {
			t.Errorf("docs/plugins.md: no row for %s in the table of standard actions", k)
			continue
		}
		for _, name := range contractNames(k) {
			if !strings.Contains(row, "`"+name+"`") {
				t.Errorf("docs/plugins.md: the %s row does not name %q", k, name)
			}
		}
	}
}

func contractNames(k schema.Kind) []string {
	var names []string
	for n := range schema.Contract(k) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// paragraph returns the paragraph of a Markdown file that starts with start.
func paragraph(t *testing.T, path, start string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("%s: no paragraph starting %q", path, start)
	}
	s = s[i:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}
