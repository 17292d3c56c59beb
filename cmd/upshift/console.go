package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/termtext"
)

// ConsoleSink writes one line per step outcome for a person, with elapsed
// times; progress lines are indented under their step. On a terminal
// (Live) it also keeps a live footer with one line per node: the step it
// is on and for how long, or how it ended.
type ConsoleSink struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	// Live redraws the per-node footer after every event, with ANSI
	// escapes; set it only when w is a terminal.
	Live bool

	nodes   []string // in order of first appearance
	current map[string]string
	footer  int // lines of footer on screen
}

// NewConsoleSink returns a console sink writing to w.
func NewConsoleSink(w io.Writer) *ConsoleSink {
	return &ConsoleSink{w: w, start: time.Now(), current: map[string]string{}}
}

// Emit prints e.
func (s *ConsoleSink) Emit(e runner.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Live && s.footer > 0 {
		fmt.Fprintf(s.w, "\033[%dA\033[J", s.footer) // up over the footer, clear to the end
		s.footer = 0
	}
	s.line(e)
	if s.Live {
		s.track(e)
		s.drawFooter(e.Time)
	}
}

// safe escapes what an event carries from elsewhere: messages and errors
// come from plugins (an exec's stderr, a server's reply), addresses and keys
// from the playbook's variables.
func safe(e runner.Event) runner.Event {
	e.Address, e.Action, e.Key = termtext.Line(e.Address), termtext.Line(e.Action), termtext.Line(e.Key)
	e.Message, e.Error = termtext.Block(e.Message), termtext.Block(e.Error)
	return e
}

func (s *ConsoleSink) line(e runner.Event) {
	e = safe(e)
	at := fmt.Sprintf("[%6.1fs]", e.Time.Sub(s.start).Seconds())
	switch e.Type {
	case runner.RunStarted:
		s.start = e.Time
		fmt.Fprintf(s.w, "[   0.0s] %s\n", e.Message)
	case runner.StepStarted:
		fmt.Fprintf(s.w, "%s %s: %s ...\n", at, e.Address, e.Action)
	case runner.StepProgress:
		fmt.Fprintf(s.w, "%s %s:   %s\n", at, e.Address, e.Message)
	case runner.StepRetrying:
		fmt.Fprintf(s.w, "%s %s: attempt %d failed: %s; %s\n", at, e.Address, e.Attempt, e.Error, e.Message)
	case runner.StepFinished:
		fmt.Fprintf(s.w, "%s %s: done in %s%s\n", at, e.Address, roundDur(e.Duration), suffix(e.Message))
	case runner.StepFailed:
		fmt.Fprintf(s.w, "%s %s: FAILED after %s: %s\n", at, e.Address, roundDur(e.Duration), e.Error)
	case runner.StepSkipped:
		fmt.Fprintf(s.w, "%s %s: skipped: %s\n", at, e.Address, e.Message)
	case runner.StepRestored:
		fmt.Fprintf(s.w, "%s %s: done in an earlier run\n", at, e.Address)
	case runner.RollbackStart:
		fmt.Fprintf(s.w, "%s %s\n", at, e.Message)
	case runner.RunFinished:
		fmt.Fprintf(s.w, "%s run %s: %s\n", at, e.Status, e.Message)
	}
}

// track keeps, per node (instance key), what the footer shows.
func (s *ConsoleSink) track(e runner.Event) {
	e = safe(e)
	if e.Key == "" {
		return
	}
	if _, ok := s.current[e.Key]; !ok {
		s.nodes = append(s.nodes, e.Key)
	}
	step := e.Address
	if i := strings.IndexByte(step, '['); i > 0 {
		step = strings.TrimPrefix(step[:i], "step.")
	}
	switch e.Type {
	case runner.StepStarted:
		s.current[e.Key] = "running " + step + "@" + e.Time.Format(time.RFC3339Nano)
	case runner.StepFinished, runner.StepRestored:
		s.current[e.Key] = "done " + step
	case runner.StepFailed:
		s.current[e.Key] = "FAILED " + step
	case runner.StepSkipped:
		s.current[e.Key] = "skipped " + step
	default:
		if _, ok := s.current[e.Key]; !ok {
			s.current[e.Key] = ""
		}
	}
}

func (s *ConsoleSink) drawFooter(now time.Time) {
	if len(s.nodes) == 0 {
		return
	}
	fmt.Fprintln(s.w, "  ---")
	for _, n := range s.nodes {
		state := s.current[n]
		if rest, ok := strings.CutPrefix(state, "running "); ok {
			step, since, _ := strings.Cut(rest, "@")
			t, _ := time.Parse(time.RFC3339Nano, since)
			state = fmt.Sprintf("%s ... %s", step, roundDur(now.Sub(t)))
		}
		fmt.Fprintf(s.w, "  %-16s %s\n", n, state)
	}
	s.footer = len(s.nodes) + 1
}

func suffix(m string) string {
	if m == "" {
		return ""
	}
	return " (" + m + ")"
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(100 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// safeDiagnostics returns diags with their summaries and details escaped
// for the terminal: a plugin's error (a server's reply, a command's
// output) becomes a diagnostic's detail.
func safeDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		c := *d
		c.Summary, c.Detail = termtext.Line(d.Summary), termtext.Block(d.Detail)
		out[i] = &c
	}
	return out
}
