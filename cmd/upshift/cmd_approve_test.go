package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunWithoutTerminalRefuses: with stdin not a terminal and neither
// --auto-approve nor a saved plan, run changes nothing and says what to do.
func TestRunWithoutTerminalRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir, state := kitPlaybook(t, 2, "")
	initPlaybook(t, dir)
	cmd := exec.Command(filepath.Join(binDir, "upshift"), "run", dir) // not upshift(): it approves
	cmd.Env = append(cmd.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitUsage, cmd.ProcessState.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "there is no terminal to ask on. Pass --auto-approve (CI), or save a plan and apply it:")
	assert.Contains(t, string(out), "upshift run upgrade.plan")
	assert.Empty(t, recordCounts(t, state), "nothing ran")
}

// inProcess runs upshift in this process with stdin as given, answering
// as if on a terminal.
func inProcess(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("UPSHIFT_PLUGIN_PATH", binDir)
	t.Setenv("NO_COLOR", "1")
	was := stdinIsTerminal
	stdinIsTerminal = func(io.Reader) bool { return true }
	t.Cleanup(func() { stdinIsTerminal = was })
	// This process goes on starting upshift processes: it must not be left
	// with SIGHUP ignored (TestSignalsStopCleanly/SIGHUP failed after it).
	hangupIgnoredWhileLoading = false
	t.Cleanup(func() { hangupIgnoredWhileLoading = true })
	var out, errb bytes.Buffer
	root := newRootCommand(&out, &errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(normalizeArgs(args))
	code := exitOK
	if err := root.Execute(); err != nil {
		ee, ok := err.(exitError)
		require.True(t, ok, "%v", err)
		code = ee.code
	}
	return code, out.String(), errb.String()
}

// TestRunAsksForYes: on a terminal, run shows the batches, gates and items
// and goes on only on "yes"; anything else changes nothing.
func TestRunAsksForYes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir, state := kitPlaybook(t, 3, "")
	initPlaybook(t, dir)
	code, out, stderr := inProcess(t, "y\n", "run", dir)
	assert.Equal(t, exitStopped, code, stderr)
	assert.Contains(t, out, "upshift run will change cluster ")
	assert.Contains(t, out, "Plan: 9 steps.\n  rollout \"items\": 3 items in 2 batches (on_failure = halt)\n    batch 1: n1, n2\n    batch 2: n3\n")
	assert.Contains(t, out, "Only 'yes' goes on. Run it? ")
	assert.Contains(t, stderr, "Cancelled: nothing was changed.")
	assert.Empty(t, recordCounts(t, state), "nothing ran on an answer other than yes")

	code, out, stderr = inProcess(t, "yes\n", "run", dir)
	require.Equal(t, exitOK, code, "%s\n%s", out, stderr)
	assert.Equal(t, 1, recordCounts(t, state)["second-n3"])
}

// TestTargetRunsOneItemThenPauses: run --target n1 upgrades n1 alone (its
// batch-mate n2 waits), ends paused with exit 5 and the command that goes
// on; that command upgrades the rest.
func TestTargetRunsOneItemThenPauses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir, state := kitPlaybook(t, 3, "")
	initPlaybook(t, dir)
	out, code := runCode(t, "run", dir, "--target", "n1")
	require.Equal(t, exitStopped, code, out)
	assert.Contains(t, out, `is paused after item "n1" of --target, which is done. Nothing was undone`)
	assert.Contains(t, out, "To continue, run\n  upshift run "+dir+"\n")
	assert.Equal(t, map[string]int{"first-n1": 1, "second-n1": 1}, recordCounts(t, state))

	out, code = runCode(t, "run", dir, "--target", "n9")
	require.Equal(t, exitFailed, code, out)
	assert.Contains(t, out, `--target "n9" is not an item of any rollout of the playbook (did you mean "n1"?)`)

	runOK(t, "run", dir)
	counts := recordCounts(t, state)
	assert.Equal(t, 1, counts["first-n1"], "n1 is not run again")
	assert.Equal(t, 1, counts["second-n3"])
	assert.Len(t, counts, 6)
}
