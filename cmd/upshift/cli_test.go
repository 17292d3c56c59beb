package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const shipped = "../../playbooks/rolling-upgrade"
const threeNodes = "../../playbooks/testdata/three-nodes.vars.hcl"

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	code, out, _ := runCLI("validate", shipped, "-var-file", threeNodes)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "is valid: 38 steps")

	code, _, stderr := runCLI("validate", "../../playbooks/testdata/invalid/cycle_two_steps")
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, stderr, "main.hcl:19:1: error: Dependency cycle")

	code, _, stderr = runCLI("plan")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "accepts 1 arg")

	code, _, _ = runCLI("frobnicate")
	assert.Equal(t, exitUsage, code)

	code, _, stderr = runCLI("plan", shipped) // required variables missing
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, stderr, "No value for required variable")
}

func TestSingleDashLongFlags(t *testing.T) {
	code, out, stderr := runCLI("plan", shipped, "-var-file="+threeNodes, "-var", "drain_timeout=90s", "-json")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, out, `"timeout": "90s"`)
}

func TestGraphIsValidDOT(t *testing.T) {
	code, out, stderr := runCLI("graph", shipped, "-var-file", threeNodes)
	require.Equal(t, exitOK, code, stderr)
	assert.True(t, strings.HasPrefix(out, "digraph upshift {"))
	assert.Contains(t, out, `"step.enable[\"node-2\"]" -> "step.drain[\"node-1\"]";`)
	if dot, err := exec.LookPath("dot"); err == nil {
		cmd := exec.Command(dot, "-Tsvg")
		cmd.Stdin = strings.NewReader(out)
		svg, err := cmd.Output()
		require.NoError(t, err, "dot rejects the graph")
		assert.Contains(t, string(svg), "<svg")
	}
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	messy := "step \"a\" {\nrun=database.main.check\n  description    =   \"x\"\n}\n"
	path := filepath.Join(dir, "main.hcl")
	require.NoError(t, os.WriteFile(path, []byte(messy), 0o644))

	code, out, _ := runCLI("fmt", "-check", dir)
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, out, "main.hcl")
	b, _ := os.ReadFile(path)
	assert.Equal(t, messy, string(b), "-check changes nothing")

	code, _, _ = runCLI("fmt", dir)
	assert.Equal(t, exitOK, code)
	b, _ = os.ReadFile(path)
	assert.Equal(t, "step \"a\" {\n  run         = database.main.check\n  description = \"x\"\n}\n", string(b))

	code, _, _ = runCLI("fmt", "-check", dir)
	assert.Equal(t, exitOK, code, "formatted files pass -check")

	broken := filepath.Join(dir, "broken.hcl")
	require.NoError(t, os.WriteFile(broken, []byte("step \"a\" {\n"), 0o644))
	code, _, stderr := runCLI("fmt", broken)
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, stderr, "Unclosed configuration block")
	b, _ = os.ReadFile(broken)
	assert.Equal(t, "step \"a\" {\n", string(b), "a file with syntax errors is left untouched")
}

func TestShippedPlaybookIsFormatted(t *testing.T) {
	code, out, _ := runCLI("fmt", "-check", shipped)
	assert.Equal(t, exitOK, code, "unformatted: %s", out)
}

// TestPluginReferenceDocsAreCurrent regenerates docs/plugins/reference from
// the plugins' schemas and compares: `make docs` rewrites them.
func TestPluginReferenceDocsAreCurrent(t *testing.T) {
	needBinaries(t)
	out := t.TempDir()
	runOK(t, "plugins", "docs", "--bin", binDir, "--out", out)
	generated, err := filepath.Glob(filepath.Join(out, "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, generated)
	for _, g := range generated {
		want, err := os.ReadFile(filepath.Join("../../docs/plugins/reference", filepath.Base(g)))
		require.NoError(t, err, "run `make docs`")
		got, _ := os.ReadFile(g)
		assert.Equal(t, string(want), string(got), "%s is stale: run `make docs`", filepath.Base(g))
	}
}
