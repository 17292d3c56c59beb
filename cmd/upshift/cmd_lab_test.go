package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
)

// stub writes a stand-in for `upshift run`: it records its arguments,
// prints runner events for one step, then runs body.
func stub(t *testing.T, body string) (path, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	path, argsFile = filepath.Join(dir, "run-stub"), filepath.Join(dir, "args")
	script := `#!/bin/sh
echo "$@" > ` + argsFile + `
echo '{"time":"2026-01-02T03:04:05Z","type":"step_started","address":"step.stub_step"}'
echo 'not an event'
echo '{"time":"2026-01-02T03:04:05.5Z","type":"step_finished","address":"step.stub_step","duration_ns":500000000}'
` + body + "\n"
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path, argsFile
}

// TestLabDemoVerdictNeedsTheUpgrade runs the demo's orchestration with a
// run that upgrades nothing: traffic is clean, but the final state is not
// version 2, so the demo must fail, say why, and still write its report.
// Then lab status and lab down, through the CLI.
func TestLabDemoVerdictNeedsTheUpgrade(t *testing.T) {
	needHAProxy(t)
	dir := filepath.Join(t.TempDir(), "lab")
	labDown(t, dir)
	run, args := stub(t, "exit 0")
	out, err := upshift(t, "lab", "demo", "--dir", dir, "--playbook", shippedPlaybook, "--warmup", "700ms", "--run-cmd", run).CombinedOutput()
	text := string(out)
	require.Error(t, err, text)
	got, rerr := os.ReadFile(args)
	require.NoError(t, rerr)
	assert.Equal(t, "run "+filepath.Join(dir, "playbook")+" -var-file "+filepath.Join(dir, "cluster.vars.hcl")+" --json --auto-approve\n", string(got))
	assert.Contains(t, text, `step.stub_step                     done   500ms`)
	assert.Contains(t, text, "Upgrade finished in")
	assert.Regexp(t, `reads:  \d+ sent, 0 failed`, text)
	assert.Regexp(t, `writes: [1-9]\d* acknowledged, 0 refused cleanly while read-only \(503\), 0 failed otherwise`, text, "nothing made the nodes read-only")
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		assert.Regexp(t, n+`: /version says 2 +FAILED +HTTP 200, version "1"`, text)
		assert.Regexp(t, n+`: uses database B +FAILED`, text)
		assert.Regexp(t, n+`: rolling-upgrade marker +FAILED`, text)
		assert.Regexp(t, `haproxy: `+n+` UP and in rotation +ok`, text)
	}
	assert.NotContains(t, text, "Zero failed requests, zero lost writes")
	html, rerr := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, rerr)
	assert.Contains(t, string(html), ">stub_step</text>")
	assert.Contains(t, string(html), `<strong class="bad">FAILED</strong>`)
	assert.FileExists(t, filepath.Join(dir, "events.jsonl"))

	status := runOK(t, "lab", "status", "--dir", dir)
	assert.Regexp(t, `node-2\s+\d+\s+ok\s+1\s+false\s+UP\s+\d+\s+`+filepath.Join(dir, "db", "a.sqlite"), status)
	assert.Contains(t, status, "haproxy: pid ")

	s, lerr := lab.Load(dir)
	require.NoError(t, lerr)
	down := runOK(t, "lab", "down", "--dir", dir)
	assert.Equal(t, "  node-1 stopped\n  node-2 stopped\n  node-3 stopped\n  haproxy stopped\n", down)
	assert.False(t, s.Running())
	assert.Contains(t, runOK(t, "lab", "status", "--dir", dir), "haproxy: not running")
	assert.DirExists(t, dir, "down keeps the files")
	runOK(t, "lab", "down", "--dir", dir, "--purge")
	assert.NoDirExists(t, dir)
}

// TestLabDemoCapsTheRun: a run that outlasts --duration-cap is stopped,
// and the demo fails saying so.
func TestLabDemoCapsTheRun(t *testing.T) {
	needHAProxy(t)
	dir := filepath.Join(t.TempDir(), "lab")
	labDown(t, dir)
	run, _ := stub(t, "exec sleep 30")
	out, err := upshift(t, "lab", "demo", "--dir", dir, "--playbook", shippedPlaybook, "--warmup", "300ms",
		"--duration-cap", "1s", "--run-cmd", run).CombinedOutput()
	text := string(out)
	require.Error(t, err, text)
	assert.Contains(t, text, "Upgrade DID NOT FINISH in 1")
	assert.Contains(t, text, "stopped after --duration-cap 1s")
	assert.True(t, strings.Contains(text, "Report: "+filepath.Join(dir, "report.html")), text)
	assert.Contains(t, text, "`upshift lab down --dir "+dir+"` stops it", "the hint names this lab's folder")
}
