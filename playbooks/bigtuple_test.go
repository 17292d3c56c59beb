package playbooks

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestParseSplitSameTree: a file whose large lists are parsed item by item
// has the tree HCL makes of it whole (same expressions, same ranges), and
// what the split parse does not follow is parsed whole.
func TestParseSplitSameTree(t *testing.T) {
	defer func(n int) { bigTupleBytes = n }(bigTupleBytes)
	bigTupleBytes = 0
	vars, err := os.ReadFile("testdata/three-nodes.vars.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var many strings.Builder
	many.WriteString("a = 1\nnodes = [\n")
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&many, "  { name = \"node-%d\", processing = %t, cmd = [\"x\", \"--config\", \"/etc/%d.json\"], n = -%d },\n", i, i == 1, i, i)
	}
	many.WriteString("]\nb = [1, [2, 3], {c = (4)}] # after\n")
	for src, split := range map[string]bool{
		string(vars):                      true,
		many.String():                     true,
		"x = [1, 2]\n":                    true,
		"x = [1, 2,]":                     true,
		"x = [\r\n  1,\r\n]\r\n":          true,
		"x = []\n":                        true,
		"x = [for n in y : n]\n":          false,
		"x = [for]\n":                     false,
		"x = [\"é\", 2]\n":                false,
		"é = 1\nx = [1, 2]\n":             true,
		"x = [1, 2][0]\n":                 false,
		"x = [1, 2] == y\n":               false,
		"x = [1, 2] # c\n":                false,
		"x = [1, # c\n 2]\n":              false,
		"x = [1, \"${y}\"]\n":             false,
		"x = [1,, 2]\n":                   false,
		"x = [1, 2 3]\n":                  false,
		"x = [1, {]\n":                    false,
		"x = [1, 2]\ny = = 3\n":           false,
		"x = [1, 2]\ny = <<EOT\nz\nEOT\n": true,
		"b { x = [1, 2] }\n":              false,
		"x = f([1, 2])\n":                 false,
	} {
		want, wantDiags := hclsyntax.ParseConfig([]byte(src), "vars.hcl", hcl.InitialPos)
		got := parseSplit([]byte(src), "vars.hcl")
		if (got != nil) != split {
			t.Errorf("split parse used = %v, want %v, for %q", got != nil, split, src)
		}
		if got == nil {
			continue
		}
		if len(wantDiags) > 0 {
			t.Errorf("split parse of %q has no diagnostics, HCL's has: %s", src, wantDiags.Error())
		}
		if !reflect.DeepEqual(want.Body, got.Body) || string(got.Bytes) != src {
			t.Errorf("split parse of %q differs from HCL's", src)
		}
	}
}

// FuzzParseSplit: whatever the input, a split parse is HCL's parse.
func FuzzParseSplit(f *testing.F) {
	f.Add("a = 1\nnodes = [\n  { name = \"n-1\", cmd = [\"x\", \"-y\"] },\n  { name = \"n-2\" },\n]\n")
	f.Add("x = [1, [2, 3], (4), {a = [5]}]\ny = \"z\"\n")
	f.Fuzz(func(t *testing.T, src string) {
		defer func(n int) { bigTupleBytes = n }(bigTupleBytes)
		bigTupleBytes = 0
		got := parseSplit([]byte(src), "vars.hcl")
		if got == nil {
			return
		}
		want, diags := hclsyntax.ParseConfig([]byte(src), "vars.hcl", hcl.InitialPos)
		if len(diags) > 0 || !reflect.DeepEqual(want.Body, got.Body) {
			t.Fatalf("split parse of %q differs from HCL's (%v)", src, diags)
		}
	})
}
