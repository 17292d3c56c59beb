package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// EventType says what happened.
type EventType string

// Event types, in the order a step sees them.
const (
	RunStarted    EventType = "run_started"
	StepStarted   EventType = "step_started"
	StepProgress  EventType = "step_progress"
	StepRetrying  EventType = "step_retrying"
	StepFinished  EventType = "step_finished"
	StepFailed    EventType = "step_failed"
	StepSkipped   EventType = "step_skipped"
	StepRestored  EventType = "step_restored" // done in an earlier, interrupted run
	RunFinished   EventType = "run_finished"
	RollbackStart EventType = "rollback_started"
)

// Event is one thing that happened during a run. Values never hold
// sensitive data: arguments are not part of events.
type Event struct {
	Time     time.Time     `json:"time"`
	Type     EventType     `json:"type"`
	Address  string        `json:"address,omitempty"`
	Action   string        `json:"action,omitempty"`
	Key      string        `json:"key,omitempty"`
	Attempt  int           `json:"attempt,omitempty"`
	Message  string        `json:"message,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Status   string        `json:"status,omitempty"`
}

// Sink receives events. Emit is called from several goroutines.
type Sink interface {
	Emit(Event)
}

// Sinks fans events out to several sinks.
type Sinks []Sink

// Emit sends e to every sink.
func (s Sinks) Emit(e Event) {
	for _, x := range s {
		x.Emit(e)
	}
}

// JSONSink writes one JSON object per line, for CI and log shippers.
type JSONSink struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewJSONSink returns a sink writing JSON lines to w.
func NewJSONSink(w io.Writer) *JSONSink { return &JSONSink{enc: json.NewEncoder(w)} }

// Emit writes e as one line.
func (s *JSONSink) Emit(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.enc.Encode(e)
}

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
func (s *ConsoleSink) Emit(e Event) {
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

func (s *ConsoleSink) line(e Event) {
	at := fmt.Sprintf("[%6.1fs]", e.Time.Sub(s.start).Seconds())
	switch e.Type {
	case RunStarted:
		s.start = e.Time
		fmt.Fprintf(s.w, "[   0.0s] %s\n", e.Message)
	case StepStarted:
		fmt.Fprintf(s.w, "%s %s: %s ...\n", at, e.Address, e.Action)
	case StepProgress:
		fmt.Fprintf(s.w, "%s %s:   %s\n", at, e.Address, e.Message)
	case StepRetrying:
		fmt.Fprintf(s.w, "%s %s: attempt %d failed: %s; %s\n", at, e.Address, e.Attempt, e.Error, e.Message)
	case StepFinished:
		fmt.Fprintf(s.w, "%s %s: done in %s%s\n", at, e.Address, roundDur(e.Duration), suffix(e.Message))
	case StepFailed:
		fmt.Fprintf(s.w, "%s %s: FAILED after %s: %s\n", at, e.Address, roundDur(e.Duration), e.Error)
	case StepSkipped:
		fmt.Fprintf(s.w, "%s %s: skipped: %s\n", at, e.Address, e.Message)
	case StepRestored:
		fmt.Fprintf(s.w, "%s %s: done in an earlier run\n", at, e.Address)
	case RollbackStart:
		fmt.Fprintf(s.w, "%s %s\n", at, e.Message)
	case RunFinished:
		fmt.Fprintf(s.w, "%s run %s: %s\n", at, e.Status, e.Message)
	}
}

// track keeps, per node (instance key), what the footer shows.
func (s *ConsoleSink) track(e Event) {
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
	case StepStarted:
		s.current[e.Key] = "running " + step + "@" + e.Time.Format(time.RFC3339Nano)
	case StepFinished, StepRestored:
		s.current[e.Key] = "done " + step
	case StepFailed:
		s.current[e.Key] = "FAILED " + step
	case StepSkipped:
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
