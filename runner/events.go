package runner

import (
	"encoding/json"
	"io"
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
