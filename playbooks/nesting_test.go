package playbooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nestingSeeds are inputs at and around the limit, in every form the
// pre-scan follows or gives up on.
func nestingSeeds(t testing.TB) map[string]bool {
	n := MaxNestingDepth
	seeds := map[string]bool{ // source -> whether the pre-scan should vouch for it
		"a = " + strings.Repeat("[", n) + strings.Repeat("]", n):                            true,
		"a = " + strings.Repeat("[", n+1) + strings.Repeat("]", n+1):                        false,
		"a = " + strings.Repeat("[", n-1) + `"x"` + strings.Repeat("]", n-1):                true,
		"a = " + strings.Repeat("[", n) + `"x"` + strings.Repeat("]", n):                    false,
		"a = " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n):                      true,
		"a = " + strings.Repeat("!", n) + "true":                                            true,
		"a = " + strings.Repeat("!", n+1) + "true":                                          false,
		"a = " + strings.Repeat("- ", n/2) + "# c\n" + strings.Repeat("-", n/2+1) + "1":     false,
		"a = " + strings.Repeat("-", n/2) + "/* c */" + strings.Repeat("-", n/2+1) + "1":    false,
		"a = \"" + strings.Repeat("]", 500) + "\"\nb = " + strings.Repeat("[", n) + "]":     true,
		"a = \"\\\"" + strings.Repeat("}", 500) + "\"\nb = " + strings.Repeat("{", n) + "}": true,
		"# " + strings.Repeat("}", 500) + "\na = " + strings.Repeat("[", n) + "]":           true,
		"/* " + strings.Repeat(")", 500) + " */ a = " + strings.Repeat("(", n) + "1)":       true,
		"a = \"${" + strings.Repeat("[", n) + "\"":                                          false,
		"a = \"%{" + strings.Repeat("[", n) + "\"":                                          false,
		"a = <<EOT\n" + strings.Repeat("]", 500) + "\nEOT\nb = [[1]]\n":                     false,
		"a = \"x\ny\"":                               false,
		"a = \"unclosed":                             false,
		"/* unclosed " + "}}}":                       false,
		"a = 1 ~} ~} ~}\nb = [[[1]]]":                true,
		"a = node-" + strings.Repeat("-", n+1) + "x": false,
	}
	files, _ := filepath.Glob("testdata/invalid/*/*.hcl")
	files = append(files, "rolling-upgrade/upgrade.hcl", "rolling-upgrade/cluster.hcl", "rolling-upgrade/variables.hcl", "testdata/three-nodes.vars.hcl")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds[string(b)] = shallow(b)
	}
	return seeds
}

// TestShallowAgreesWithLexer: what the byte pre-scan vouches for, HCL's
// lexer finds within the limit too; and it vouches for plain data (a
// variables file), which is what it is for.
func TestShallowAgreesWithLexer(t *testing.T) {
	for src, want := range nestingSeeds(t) {
		got := shallow([]byte(src))
		if got != want {
			t.Errorf("shallow = %v, want %v, for %.80q", got, want, src)
		}
		if got && lexedNesting([]byte(src), "main.hcl") != nil {
			t.Errorf("shallow vouched for input the lexer finds too deep: %.80q", src)
		}
	}
	if b, err := os.ReadFile("testdata/three-nodes.vars.hcl"); err != nil || !shallow(b) {
		t.Fatalf("a variables file should need no lexing (err %v)", err)
	}
}

// FuzzShallow: whatever the input, the pre-scan never vouches for what the
// lexer finds too deep.
func FuzzShallow(f *testing.F) {
	for src := range nestingSeeds(f) {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if shallow([]byte(src)) && lexedNesting([]byte(src), "main.hcl") != nil {
			t.Fatalf("shallow vouched for input the lexer finds too deep: %q", src)
		}
	})
}
