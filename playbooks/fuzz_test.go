package playbooks_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
)

// FuzzLoad feeds arbitrary text to the loader, the graph builder and the
// planner as a playbook file: whatever the input, they must return
// diagnostics, never panic.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*/main.hcl")
	seeds = append(seeds, "rolling-upgrade/upgrade.hcl", "rolling-upgrade/cluster.hcl")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(string(b))
		}
	}
	f.Add(`step "a" { run = database.x.y }`)
	// Nesting around the depth limit, and large inputs (issue 11): the
	// mutator varies brackets, operators and templates from here.
	f.Add("locals {\n  a = " + strings.Repeat("[", 101) + strings.Repeat("]", 101) + "\n}\n")
	f.Add("locals {\n  a = " + strings.Repeat("{x = ", 99) + "1" + strings.Repeat("}", 99) + "\n}\n")
	f.Add("locals {\n  a = " + strings.Repeat("!", 200) + "true\n  b = \"" + strings.Repeat("${", 120) + "\"\n}\n")
	f.Add("locals {\n  a = " + strings.Repeat("(", 20000) + "\n}\n")
	f.Add(localsSource(64 << 10))
	f.Fuzz(func(t *testing.T, src string) {
		pb, diags := playbooks.NewParser().LoadFiles("/nonexistent", map[string]string{"main.hcl": src}, playbooks.LoadOptions{Env: []string{}})
		if diags.HasErrors() || pb == nil {
			return
		}
		g, diags := runner.BuildGraph(pb)
		if diags.HasErrors() {
			return
		}
		_, _ = runner.MakePlan(g)
	})
}
