package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/upshift-dev/upshift/runner"
)

func TestConsoleSinkLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewConsoleSink(&buf)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.Emit(runner.Event{Time: t0, Type: runner.RunStarted, Message: "running 2 steps"})
	s.Emit(runner.Event{Time: t0.Add(100 * time.Millisecond), Type: runner.StepStarted, Address: `step.drain["n1"]`, Action: "load_balancer.front.drain", Key: "n1"})
	s.Emit(runner.Event{Time: t0.Add(1500 * time.Millisecond), Type: runner.StepFinished, Address: `step.drain["n1"]`, Key: "n1", Duration: 1400 * time.Millisecond})
	s.Emit(runner.Event{Time: t0.Add(2 * time.Second), Type: runner.StepFailed, Address: `step.stop["n1"]`, Key: "n1", Duration: 500 * time.Millisecond, Error: "boom"})
	assert.Equal(t, `[   0.0s] running 2 steps
[   0.1s] step.drain["n1"]: load_balancer.front.drain ...
[   1.5s] step.drain["n1"]: done in 1.4s
[   2.0s] step.stop["n1"]: FAILED after 500ms: boom
`, buf.String())
	assert.NotContains(t, buf.String(), "\033[", "no escapes when not live")
}

func TestConsoleSinkLiveFooter(t *testing.T) {
	var buf bytes.Buffer
	s := NewConsoleSink(&buf)
	s.Live = true
	t0 := time.Now()
	s.Emit(runner.Event{Time: t0, Type: runner.StepStarted, Address: `step.drain["n1"]`, Key: "n1"})
	s.Emit(runner.Event{Time: t0.Add(2 * time.Second), Type: runner.StepStarted, Address: `step.drain["n2"]`, Key: "n2"})
	s.Emit(runner.Event{Time: t0.Add(3 * time.Second), Type: runner.StepFinished, Address: `step.drain["n1"]`, Key: "n1"})
	out := buf.String()
	last := out[strings.LastIndex(out, "  ---"):]
	assert.Contains(t, last, "n1               done drain")
	assert.Contains(t, last, "n2               drain ... 1s")
	assert.Contains(t, out, "\033[3A\033[J", "the previous footer (rule + 2 nodes) is erased before printing")
}
