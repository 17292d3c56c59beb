package doctest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
)

// TestDocsLinks: every relative link of README.md and docs/ points to a
// file or folder that exists and, for a #anchor into a Markdown file, to
// one of its headings (GitHub's slugs: lower case, punctuation dropped,
// spaces to hyphens).
func TestDocsLinks(t *testing.T) {
	files, err := DocFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{}
	slugsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		b, err := os.ReadFile(path)
		if err == nil {
			inFence := false
			for _, line := range strings.Split(string(b), "\n") {
				if fenceRE.MatchString(line) {
					inFence = !inFence
					continue
				}
				if m := headingRE.FindStringSubmatch(line); m != nil && !inFence {
					base := slug(m[1])
					s := base
					for i := 1; a[s]; i++ {
						s = base + "-" + string(rune('0'+i))
					}
					a[s] = true
				}
			}
		}
		anchors[path] = a
		return a
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for n, line := range strings.Split(string(b), "\n") {
			if fenceRE.MatchString(line) {
				inFence = !inFence
				continue
			}
			if inFence {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				pos := strings.TrimPrefix(file, root+"/") + ":" + itoa(n+1)
				path, anchor, _ := strings.Cut(target, "#")
				full := file
				if path != "" {
					full = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(full); err != nil {
						t.Errorf("%s: link to %s: no such file", pos, target)
						continue
					}
				}
				if anchor != "" && strings.HasSuffix(full, ".md") && !slugsOf(full)[anchor] {
					t.Errorf("%s: link to %s: %s has no heading with that anchor", pos, target, strings.TrimPrefix(full, root+"/"))
				}
			}
		}
	}
}

// slug is GitHub's anchor for a heading.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = slugDrop.ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

func itoa(n int) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
