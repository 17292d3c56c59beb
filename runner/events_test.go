package runner

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConsoleSinkLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewConsoleSink(&buf)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.Emit(Event{Time: t0, Type: RunStarted, Message: "running 2 steps"})
	s.Emit(Event{Time: t0.Add(100 * time.Millisecond), Type: StepStarted, Address: `step.drain["n1"]`, Action: "load_balancer.front.drain", Key: "n1"})
	s.Emit(Event{Time: t0.Add(1500 * time.Millisecond), Type: StepFinished, Address: `step.drain["n1"]`, Key: "n1", Duration: 1400 * time.Millisecond})
	s.Emit(Event{Time: t0.Add(2 * time.Second), Type: StepFailed, Address: `step.stop["n1"]`, Key: "n1", Duration: 500 * time.Millisecond, Error: "boom"})
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
	s.Emit(Event{Time: t0, Type: StepStarted, Address: `step.drain["n1"]`, Key: "n1"})
	s.Emit(Event{Time: t0.Add(2 * time.Second), Type: StepStarted, Address: `step.drain["n2"]`, Key: "n2"})
	s.Emit(Event{Time: t0.Add(3 * time.Second), Type: StepFinished, Address: `step.drain["n1"]`, Key: "n1"})
	out := buf.String()
	last := out[strings.LastIndex(out, "  ---"):]
	assert.Contains(t, last, "n1               done drain")
	assert.Contains(t, last, "n2               drain ... 1s")
	assert.Contains(t, out, "\033[3A\033[J", "the previous footer (rule + 2 nodes) is erased before printing")
}

func TestJSONSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONSink(&buf)
	s.Emit(Event{Type: StepFailed, Address: "step.x", Error: "boom", Duration: time.Second})
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "step_failed", got["type"])
	assert.Equal(t, "boom", got["error"])
	assert.Equal(t, float64(time.Second), got["duration_ns"])
}
