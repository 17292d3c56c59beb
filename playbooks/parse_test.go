package playbooks_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/schema"
)

// TestTwoPhasesReadEachFileOnce loads the shipped playbook with a variables
// file in two phases, as a run does: Parse names the plugins, then Decode
// checks the resources against their schemas. Every file is read exactly
// once, by Parse; Decode and planning read none.
func TestTwoPhasesReadEachFileOnce(t *testing.T) {
	reads := map[string]int{}
	p := playbooks.NewParser()
	p.ReadFile = func(path string) ([]byte, error) {
		reads[path]++
		return os.ReadFile(path)
	}
	vars := filepath.Join("testdata", "three-nodes.vars.hcl")
	parsed, diags := p.Parse("rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{vars}, Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())

	var names []string
	used := map[string][]string{}
	for _, r := range parsed.Requirements() {
		names = append(names, r.Plugin.Name)
		used[r.Plugin.Name] = r.Resources
		assert.Equal(t, "upshift-plugin-"+r.Plugin.Name, r.Plugin.Source)
	}
	assert.Equal(t, []string{"haproxy", "process", "sqlite"}, names, "sorted by name, from the variables file")
	assert.Equal(t, []string{"database.main"}, used["sqlite"])
	assert.Equal(t, []string{"load_balancer.front"}, used["haproxy"])
	assert.Equal(t, []string{"node_pool.cluster"}, used["process"])
	afterParse := len(reads)

	// A real config schema for sqlite: phase 2 must decode against it.
	asked := map[string]int{}
	schemas := func(pl *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
		asked[pl.Name]++
		sch := schema.ContractPlugin(kind)
		if pl.Name == "sqlite" {
			sch.Config = &schema.Object{Attributes: []*schema.Attribute{{Name: "path", Type: cty.String, Required: true}, {Name: "busy_timeout", Type: cty.String}}}
		}
		return sch, nil
	}
	pb, diags := parsed.Decode(schemas)
	require.False(t, diags.HasErrors(), diags.Error())
	g, diags := runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	plan, diags := runner.MakePlan(g)
	require.False(t, diags.HasErrors(), diags.Error())
	assert.Len(t, plan.Steps, 38)

	assert.Equal(t, map[string]int{"haproxy": 1, "process": 1, "sqlite": 1}, asked)
	cfg := pb.Resources["database.main"].Config
	assert.True(t, cfg.Type().Equals(cty.Object(map[string]cty.Type{"path": cty.String, "busy_timeout": cty.String})), "config decoded against the schema: %s", cfg.Type().FriendlyName())
	assert.Equal(t, "/var/lib/platform/db/a.sqlite", cfg.GetAttr("path").AsString())

	want := map[string]int{vars: 1}
	for _, f := range []string{"cluster.hcl", "upgrade.hcl", "variables.hcl", "verify.hcl"} {
		want[filepath.Join("rolling-upgrade", f)] = 1
	}
	assert.Equal(t, want, reads, "each file read exactly once")
	assert.Equal(t, afterParse, len(reads), "Decode reads no file")
	assert.Len(t, p.Files(), len(want), "the parser keeps every file for diagnostics")
	t.Logf("%d files, %d reads", len(want), total(reads))
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestDecodeAgainWithOtherSchemas: Decode leaves the parsed playbook as it
// was, so it can run again (contracts, then the plugins' own schemas) and
// each result stands alone.
func TestDecodeAgainWithOtherSchemas(t *testing.T) {
	src := map[string]string{"main.hcl": `
database "main" {
  plugin = "sqlite"
  config {
    path = "a.sqlite"
  }
}
step "check" {
  run = database.main.check
}
`}
	parsed, diags := playbooks.NewParser().ParseFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	first, diags := parsed.Decode(nil)
	require.False(t, diags.HasErrors(), diags.Error())
	_, diags = parsed.Decode(func(_ *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
		sch := schema.ContractPlugin(kind)
		sch.Config = &schema.Object{Attributes: []*schema.Attribute{{Name: "file", Type: cty.String}}}
		return sch, nil
	})
	require.True(t, diags.HasErrors())
	assert.Contains(t, diags.Error(), `Unsupported argument; An argument named "path" is not expected here`)
	assert.Nil(t, first.Resources["database.main"].Schema.Config, "the first playbook keeps its contract")
	require.Len(t, first.Steps, 1)
}

// TestPlaybookTooLarge: a file over MaxFileBytes, or files over
// MaxPlaybookBytes together, are refused before parsing, with a diagnostic.
func TestPlaybookTooLarge(t *testing.T) {
	big := strings.Repeat("# filler\n", playbooks.MaxFileBytes/9+1)
	_, diags := playbooks.NewParser().LoadFiles("/nonexistent", map[string]string{"main.hcl": big}, playbooks.LoadOptions{Env: []string{}})
	require.True(t, diags.HasErrors())
	require.Len(t, diags, 1)
	assert.Equal(t, "Playbook too large", diags[0].Summary)
	assert.Equal(t, "main.hcl", diags[0].Subject.Filename)
	assert.Contains(t, diags[0].Detail, "at most 2.0 MiB")

	half := strings.Repeat("# filler\n", playbooks.MaxFileBytes/9-1)
	srcs := map[string]string{"a.hcl": half, "b.hcl": half, "c.hcl": half}
	_, diags = playbooks.NewParser().LoadFiles("/nonexistent", srcs, playbooks.LoadOptions{Env: []string{}})
	require.True(t, diags.HasErrors())
	assert.Equal(t, "Playbook too large", diags[0].Summary)
	assert.Equal(t, "c.hcl", diags[0].Subject.Filename)
	assert.Contains(t, diags[0].Detail, "at most 4.0 MiB together")
}

// TestNestingTooDeep: input nested far deeper than MaxNestingDepth crashed
// HCL's parser with a stack overflow; it is refused before parsing, in HCL
// and in JSON variables files, with a diagnostic at the first level too deep.
func TestNestingTooDeep(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	for name, src := range map[string]string{
		"main.hcl":      "locals {\n  deep = " + deep + "\n}\n",
		"not.hcl":       "locals {\n  deep = " + strings.Repeat("!", playbooks.MaxFileBytes-100) + "true\n}\n",
		"vars.hcl.json": `{"variable": {"x": {"default": ` + deep + `}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if strings.HasSuffix(name, ".json") {
				name = "vars.json"
			}
			_, diags := playbooks.NewParser().LoadFiles("/nonexistent", map[string]string{name: src}, playbooks.LoadOptions{Env: []string{}})
			require.True(t, diags.HasErrors())
			require.Len(t, diags, 1)
			assert.Equal(t, "Nesting too deep", diags[0].Summary)
			assert.Equal(t, name, diags[0].Subject.Filename)
			assert.Less(t, diags[0].Subject.Start.Line, 3)
		})
	}
	// The shipped playbook nests well within the limit.
	_, _, diags := check(t, "rolling-upgrade", shippedOpts())
	require.False(t, diags.HasErrors(), diags.Error())
}

// TestDiagnosticsCapped: random bytes gave 1,572 error lines; at most
// MaxDiagnosticsPerFile are written per file, then how many more there were.
func TestDiagnosticsCapped(t *testing.T) {
	src := strings.Repeat("= \x00 }\n", 200)
	p := playbooks.NewParser()
	_, diags := p.LoadFiles("/nonexistent", map[string]string{"main.hcl": src}, playbooks.LoadOptions{Env: []string{}})
	require.Greater(t, len(diags), playbooks.MaxDiagnosticsPerFile)
	var buf bytes.Buffer
	require.NoError(t, playbooks.WriteDiagnostics(&buf, p.Files(), diags, "", false))
	out := buf.String()
	assert.Equal(t, playbooks.MaxDiagnosticsPerFile, strings.Count(out, ": error: "))
	assert.Contains(t, out, fmt.Sprintf("main.hcl: %d more diagnostics for this file not shown (the first 20 are above).\n", len(diags)-playbooks.MaxDiagnosticsPerFile))
}
