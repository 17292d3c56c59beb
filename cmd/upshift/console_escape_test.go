package main

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"

	"github.com/upshift-dev/upshift/runner"
)

// An exec's stderr printed a fake "run done" and retitled the window: what
// plugins send is shown escaped, a multi-line error keeps its lines.
func TestConsoleEscapesRemoteText(t *testing.T) {
	var buf bytes.Buffer
	s := NewConsoleSink(&buf)
	s.Live = true
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	evil := "\x1b]0;owned\x07\r[   9.9s] run done: 0 failed\x1b[2K\u009b1A"
	s.Emit(runner.Event{Time: t0, Type: runner.StepStarted, Address: `step.migrate["n1` + "\x1b[31m" + `"]`, Action: "node_pool.p.exec", Key: "n1\x1b[31m"})
	s.Emit(runner.Event{Time: t0.Add(time.Second), Type: runner.StepProgress, Address: `step.migrate["n1"]`, Key: "n1", Message: evil})
	s.Emit(runner.Event{Time: t0.Add(2 * time.Second), Type: runner.StepFailed, Address: `step.migrate["n1"]`, Key: "n1", Error: "exit 1\nstderr:\n\t" + evil})
	s.Close()
	out := buf.String()
	// The footer's redraw uses ESC[nA ESC[J; nothing else may.
	clean := regexp.MustCompile(`\x1b\[\d+A\x1b\[J`).ReplaceAllString(out, "")
	assert.NotContains(t, clean, "\x1b")
	assert.NotContains(t, out, "\r")
	assert.NotContains(t, out, "\x07")
	assert.NotContains(t, out, "\u009b")
	assert.Contains(t, out, `\x1b]0;owned\x07\r[   9.9s] run done: 0 failed\x1b[2K\u009b1A`)
	assert.Contains(t, out, "exit 1\nstderr:\n\t\\x1b]0;owned", "a multi-line error keeps its lines and tabs")
	assert.Contains(t, out, `n1\x1b[31m`)
}

func TestErrorsAreEscaped(t *testing.T) {
	var errOut bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetErr(&errOut)
	_ = failed(cmd, errors.New("refused:\n\x1b[2Jcleared"))
	_ = clusterLockError(cmd, errors.Join(errClusterLocked, errors.New("held by \x1b]0;x\x07")))
	assert.NotContains(t, errOut.String(), "\x1b")
	assert.Contains(t, errOut.String(), "refused:\n\\x1b[2Jcleared")
}

func TestDiagnosticsAreEscaped(t *testing.T) {
	var buf bytes.Buffer
	printDiagnostics(&buf, nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "check failed\x1b]0;x\x07", Detail: "server said:\n\x1b[2J\rrun done"}})
	assert.NotContains(t, buf.String(), "\x1b")
	assert.NotContains(t, buf.String(), "\r")
	assert.Contains(t, buf.String(), `\x1b[2J\rrun done`)
}
