package main

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/termtext"
)

// ConsoleSink writes one line per step outcome for a person, with elapsed
// times; progress lines are indented under their step, and a wait's
// repeated lines are thinned (a line on change, at most one a second, and
// a "still" heartbeat after 10 s of silence). On a terminal (Live) it also
// keeps a footer that redraws on a timer (liveview.go): the run's batch,
// step and estimate, and per node the step, for how long and what it waits
// for. When the run ends it prints a table of the nodes.
type ConsoleSink struct {
	// mu orders the lines; stateMu guards state alone, because mpb draws
	// the footer (footerLine) while a line written through it waits for
	// its turn with mu held.
	mu      sync.Mutex
	stateMu sync.Mutex
	w       io.Writer // lines go here: out, or the footer's container
	out     io.Writer
	start   time.Time
	// Live keeps the footer; set it only when out is a terminal, before
	// the first event.
	Live bool
	// Color colours the footer's state words (not with NO_COLOR).
	Color bool

	layout  *runLayout
	state   *liveState
	waits   map[string]*waitLines // per address, of running steps
	lastMsg map[string]runner.Event
	footer  *footerBars
	ticker  *time.Ticker
	done    chan struct{}
	closed  bool
	now     func() time.Time
}

// NewConsoleSink returns a console sink writing to w, knowing nothing of
// the run's shape (nodes appear as their events come).
func NewConsoleSink(w io.Writer) *ConsoleSink {
	return newConsole(w, nil)
}

// newRunConsole is the console of `upshift run`: live on a terminal, with
// the plan's layout so that queued nodes and batches show from the start.
func newRunConsole(w io.Writer, g *runner.Graph) *ConsoleSink {
	s := newConsole(w, g)
	s.Live = liveTerminal(w)
	s.Color = s.Live && colorWanted()
	return s
}

func newConsole(w io.Writer, g *runner.Graph) *ConsoleSink {
	l := layoutOf(g)
	return &ConsoleSink{w: w, out: w, start: time.Now(), layout: l, state: newLiveState(l), waits: map[string]*waitLines{}, lastMsg: map[string]runner.Event{}, now: time.Now}
}

// begin starts the timer (heartbeats, held lines) and, when live, the
// footer; at the first event, so that a sink never used starts nothing.
func (s *ConsoleSink) begin() {
	if s.done != nil || s.closed {
		return
	}
	s.done = make(chan struct{})
	s.ticker = time.NewTicker(refreshEvery)
	go s.tick(s.ticker, s.done)
	if s.Live {
		lines := 1 + min(len(s.state.order), footerNodes)
		if len(s.state.order) > footerNodes {
			lines++
		}
		if len(s.state.order) == 0 {
			lines = 1 + footerNodes // nodes unknown: room for them as they come
		}
		s.footer = newFooter(s.out, lines, true, s.footerLine)
		s.w = s.footer.p
	}
}

// footerLine is line i of the footer, drawn by mpb on its timer.
func (s *ConsoleSink) footerLine(i, _ int) string {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	lines := s.state.footer(s.now(), footerNodes, palette{on: s.Color})
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

func (s *ConsoleSink) tick(t *time.Ticker, done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.mu.Lock()
			if !s.closed { // a tick that waited for finish prints nothing after the table
				s.dueLines(s.now())
			}
			s.mu.Unlock()
		}
	}
}

// dueLines prints held progress lines whose time has come and heartbeats.
func (s *ConsoleSink) dueLines(now time.Time) {
	addrs := make([]string, 0, len(s.waits))
	for a := range s.waits {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		e, heartbeat := s.waits[a].due(now)
		switch {
		case e != nil:
			s.line(*e)
		case heartbeat:
			last := s.lastMsg[a]
			at := fmt.Sprintf("[%6.1fs]", now.Sub(s.start).Seconds())
			if last.Message != "" {
				fmt.Fprintf(s.w, "%s %s:   still waiting (%s): %s\n", at, a, shortDur(now.Sub(s.stepStart(a))), last.Message)
			} else {
				fmt.Fprintf(s.w, "%s %s:   still running (%s)\n", at, a, shortDur(now.Sub(s.stepStart(a))))
			}
		}
	}
}

func (s *ConsoleSink) stepStart(addr string) time.Time {
	if e, ok := s.lastMsg[addr+"\x00start"]; ok {
		return e.Time
	}
	return s.start
}

// Emit prints e.
func (s *ConsoleSink) Emit(e runner.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.begin()
	e = escaped(e)
	s.stateMu.Lock()
	s.state.track(e)
	s.stateMu.Unlock()
	switch e.Type {
	case runner.StepStarted:
		s.waits[e.Address] = &waitLines{quietSince: e.Time}
		s.lastMsg[e.Address+"\x00start"] = e
	case runner.StepProgress:
		s.lastMsg[e.Address] = e
		if w := s.waits[e.Address]; w != nil && !w.admit(e) {
			return
		}
	case runner.StepFinished, runner.StepFailed, runner.StepSkipped, runner.StepRestored:
		delete(s.waits, e.Address)
		delete(s.lastMsg, e.Address)
		delete(s.lastMsg, e.Address+"\x00start")
	}
	s.line(e)
	if e.Type == runner.RunFinished {
		s.finish()
	}
}

// Close ends the footer and the timer, and prints the nodes' table if the
// run did not end with a run_finished event. Safe to call more than once.
func (s *ConsoleSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finish()
}

func (s *ConsoleSink) finish() {
	if s.closed {
		return
	}
	s.closed = true
	if s.done != nil {
		s.ticker.Stop()
		close(s.done)
	}
	if s.footer != nil {
		s.footer.stop()
		s.w = s.out
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.state.started() {
		s.state.summary(s.out)
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

// line prints e (already escaped).
func (s *ConsoleSink) line(e runner.Event) {
	at := fmt.Sprintf("[%6.1fs]", e.Time.Sub(s.start).Seconds())
	switch e.Type {
	case runner.RunStarted:
		s.start = e.Time
		fmt.Fprintf(s.w, "[   0.0s] %s\n", e.Message)
	case runner.StepStarted:
		fmt.Fprintf(s.w, "%s %s: %s ...%s\n", at, e.Address, e.Action, suffix(e.Message))
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
	case runner.WriteOutageClosed:
		fmt.Fprintf(s.w, "%s write outage over: %s\n", at, e.Message)
	case runner.RunFinished:
		fmt.Fprintf(s.w, "%s run %s: %s\n", at, e.Status, e.Message)
	}
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
