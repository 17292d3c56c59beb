package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	s.Close()
	assert.Equal(t, `[   0.0s] running 2 steps
[   0.1s] step.drain["n1"]: load_balancer.front.drain ...
[   1.5s] step.drain["n1"]: done in 1.4s
[   2.0s] step.stop["n1"]: FAILED after 500ms: boom

Nodes:
  node  steps  outcome         time  slowest step
  n1    1      FAILED at stop  1.9s  drain 1.4s
`, buf.String())
	assert.NotContains(t, buf.String(), "\033[", "no escapes when not live")
}

// A footer as the operator sees it: the run's line, nodes in run order,
// queued ones as queued, what a running step waits for.
func TestFooterLines(t *testing.T) {
	l := &runLayout{steps: map[string]int{"cluster": 1, "n1": 3, "n2": 3, "n3": 3}, total: 10, nodes: []string{"cluster", "n1", "n2", "n3"},
		rollout: map[string]string{}, batch: map[string]int{}, batches: map[string]int{"up": 3}, stepNames: map[string]string{}}
	for i, n := range l.nodes[1:] {
		for _, st := range []string{"drain", "stop", "start"} {
			a := fmt.Sprintf("step.%s[%q]", st, n)
			l.stepNames[a], l.rollout[a], l.batch[a] = st, "up", i+1
		}
	}
	l.stepNames["step.copy"] = "copy"
	s := newLiveState(l)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, e := range []runner.Event{
		{Time: at(0), Type: runner.RunStarted},
		{Time: at(0), Type: runner.StepStarted, Address: "step.copy"},
		{Time: at(2 * time.Second), Type: runner.StepFinished, Address: "step.copy", Duration: 2 * time.Second},
		{Time: at(2 * time.Second), Type: runner.StepStarted, Address: `step.drain["n1"]`, Key: "n1"},
		{Time: at(3 * time.Second), Type: runner.StepProgress, Address: `step.drain["n1"]`, Key: "n1", Message: "n1: waiting for 3 in-flight session(s) (1s of 1m0s)"},
	} {
		s.track(e)
	}
	got := s.footer(at(9500*time.Millisecond), 10, palette{})
	assert.Equal(t, []string{
		"  batch 1/3 | step 1/10 | 9.5s elapsed | about 1m26s left",
		"  cluster  1/1     done 2.0s",
		"  n1       0/3     drain 7.5s  3 session(s) left",
		"  n2       0/3     queued",
		"  n3       0/3     queued",
	}, got)
	// Elapsed times move with the clock alone.
	assert.Contains(t, s.footer(at(12*time.Second), 10, palette{})[2], "drain 10.0s")

	s.track(runner.Event{Time: at(10 * time.Second), Type: runner.StepFinished, Address: `step.drain["n1"]`, Key: "n1", Duration: 8 * time.Second})
	s.track(runner.Event{Time: at(10 * time.Second), Type: runner.StepStarted, Address: `step.stop["n1"]`, Key: "n1"})
	s.track(runner.Event{Time: at(11 * time.Second), Type: runner.StepFailed, Address: `step.stop["n1"]`, Key: "n1", Error: "x"})
	colored := s.footer(at(11*time.Second), 10, palette{on: true})
	assert.Contains(t, colored[2], "\x1b[31mFAILED at stop\x1b[0m")
	plain := s.footer(at(11*time.Second), 10, palette{})
	assert.Equal(t, "  n1       1/3     FAILED at stop", plain[2], "NO_COLOR: the same line without colour")
	assert.Contains(t, plain[0], "1 failed")

	// A gate holding the rollout shows on the run's line.
	s.track(runner.Event{Time: at(11 * time.Second), Type: runner.StepStarted, Address: `gate.up["after-1"]`, Action: "gate", Message: "baking 1m0s (after batch 1)"})
	assert.Contains(t, s.footer(at(13*time.Second), 10, palette{})[0], "| gate: baking 1m0s (after batch 1), 2.0s")
	s.track(runner.Event{Time: at(14 * time.Second), Type: runner.StepFinished, Address: `gate.up["after-1"]`})
	assert.NotContains(t, s.footer(at(14*time.Second), 10, palette{})[0], "gate:")

	// Capped: running and failed nodes stay, the rest is counted.
	capped := s.footer(at(11*time.Second), 2, palette{})
	assert.Equal(t, []string{plain[0], "  n1    1/3     FAILED at stop", "  n2    0/3     queued", "  ... 2 more: 1 queued, 1 done"}, capped)
}

// A wait polled every 200 ms prints its first line, its changes at most
// once a second, and a heartbeat after 10 s of silence: never a line per
// poll.
func TestWaitLinesAreThinned(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &waitLines{quietSince: t0}
	printed := 0
	var printedAt []time.Duration
	for ms := 200; ms <= 30_000; ms += 200 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		msg := fmt.Sprintf("n1: waiting for 2 in-flight session(s) (%s of 1m0s)", time.Duration(ms)*time.Millisecond)
		if w.admit(runner.Event{Time: now, Message: msg}) {
			printed++
			printedAt = append(printedAt, now.Sub(t0))
		}
		if e, hb := w.due(now); e != nil || hb {
			printed++
			printedAt = append(printedAt, now.Sub(t0))
		}
	}
	assert.Equal(t, []time.Duration{200 * time.Millisecond, 10200 * time.Millisecond, 20200 * time.Millisecond, 30200 * time.Millisecond}[:printed], printedAt)
	assert.LessOrEqual(t, printed, 1+30/5, "at most one line per 5 s after the first")

	// A message that really changes every poll: at most one line a
	// second, the latest one.
	w = &waitLines{quietSince: t0}
	var lines []string
	for i := 1; i <= 25; i++ {
		now := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		e := runner.Event{Time: now, Message: fmt.Sprintf("waiting: answer %d", i)}
		if w.admit(e) {
			lines = append(lines, e.Message)
		}
		if p, _ := w.due(now); p != nil {
			lines = append(lines, p.Message)
		}
	}
	assert.Equal(t, []string{"waiting: answer 1", "waiting: answer 6", "waiting: answer 11", "waiting: answer 16", "waiting: answer 21"}, lines)
}

// A database copy's meter, a line every 2 s with new figures: its first
// line, then heartbeats only.
func TestMeterLinesAreThinned(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &waitLines{quietSince: t0}
	printed := 0
	for s := 2; s <= 60; s += 2 {
		now := t0.Add(time.Duration(s) * time.Second)
		msg := fmt.Sprintf("copy: %d MiB of 1.0 GiB (%d%%), 17 MiB/s, about %ds left", 17*s, 17*s*100/1024, (1024-17*s)/17)
		if w.admit(runner.Event{Time: now, Message: msg, Progress: runner.ParseProgress(msg)}) {
			printed++
		}
		if e, hb := w.due(now); e != nil || hb {
			printed++
		}
	}
	assert.Equal(t, 1+5, printed, "the first line and a heartbeat every 10 s of a 60 s copy")
}

// The live footer redraws on its timer: with no event after the step
// started, the elapsed time on the node's line still changes.
func TestLiveFooterRedrawsWithoutEvents(t *testing.T) {
	var buf syncBuffer // cluster_lock_e2e_test.go
	s := NewConsoleSink(&buf)
	s.Live = true
	s.Emit(runner.Event{Time: time.Now(), Type: runner.RunStarted, Message: "running 1 steps"})
	s.Emit(runner.Event{Time: time.Now(), Type: runner.StepStarted, Address: `step.wait["n1"]`, Key: "n1", Action: "node_pool.p.exec"})
	re := regexp.MustCompile(`n1 +wait (\d+\.\d)s`)
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		for _, m := range re.FindAllStringSubmatch(buf.String(), -1) {
			seen[m[1]] = true
		}
	}
	s.Emit(runner.Event{Time: time.Now(), Type: runner.StepFinished, Address: `step.wait["n1"]`, Key: "n1", Duration: time.Second})
	s.Close()
	assert.GreaterOrEqual(t, len(seen), 3, "elapsed times drawn: %v", seen)
	out := buf.String()
	require.Contains(t, out, "step.wait[\"n1\"]: done in 1s")
	assert.Contains(t, out, "Nodes:\n", "the table follows the footer")
}

func TestClip(t *testing.T) {
	assert.Equal(t, "abcd", clip("abcdefgh", 5))
	assert.Equal(t, "\x1b[1mab\x1b[0m", clip("\x1b[1mabcdef\x1b[0m", 3))
	assert.Equal(t, "short", clip("short", 80))
	assert.False(t, strings.Contains(clip("x", 0), "\x1b"))
}

// Through the sink: a wait polled every 200 ms for 25 s prints its first
// line and heartbeats, not 125 lines.
func TestConsoleThinsWaitLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewConsoleSink(&buf)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.start = t0
	addr := `step.healthy["n1"]`
	s.Emit(runner.Event{Time: t0, Type: runner.StepStarted, Address: addr, Key: "n1", Action: "node_pool.p.wait_healthy"})
	for ms := 200; ms <= 25_000; ms += 200 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		s.Emit(runner.Event{Time: now, Type: runner.StepProgress, Address: addr, Key: "n1", Message: "waiting: HTTP 503: starting"})
		s.mu.Lock()
		s.dueLines(now) // what the sink's ticker does
		s.mu.Unlock()
	}
	s.Emit(runner.Event{Time: t0.Add(25 * time.Second), Type: runner.StepFinished, Address: addr, Key: "n1", Duration: 25 * time.Second})
	s.Close()
	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "n1\"]:   waiting: HTTP 503: starting"), out)
	assert.Equal(t, 2, strings.Count(out, "still waiting"), out)
	assert.Contains(t, out, `[  10.2s] step.healthy["n1"]:   still waiting (10.2s): waiting: HTTP 503: starting`)
}
