package runner

import (
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/upshift-dev/upshift/runner/journal"
)

// EventType says what happened.
type EventType string

// Event types, in the order a step sees them. docs/json.md documents each
// one and its fields; adding a type is compatible, changing one is not.
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
	// WriteOutageClosed is sent once, when the run's write-outage window
	// closes: the first node on the new version took writes. Its
	// WriteOutage holds the window with its parts.
	WriteOutageClosed EventType = "write_outage"
	// FormatLine is the first line of a JSON stream (JSONSink): it names
	// the stream's format and version. It is not an Event.
	FormatLine EventType = "format"
)

// JSONFormat and JSONFormatVersion name the --json event stream. The
// version changes only when a field's meaning or type changes or a field
// or type is removed; new fields and event types keep it (docs/json.md).
const (
	JSONFormat        = "upshift.events"
	JSONFormatVersion = 1
)

// Event is one thing that happened during a run. Values never hold
// sensitive data: arguments are not part of events, and plugin messages are
// scrubbed before they get here.
type Event struct {
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// RunID is the run the event belongs to (run.id in expressions); every
	// event of a run carries it (StampRunID).
	RunID    string        `json:"run_id"`
	Address  string        `json:"address,omitempty"`
	Action   string        `json:"action,omitempty"`
	Key      string        `json:"key,omitempty"`
	Attempt  int           `json:"attempt,omitempty"`
	Message  string        `json:"message,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Status   string        `json:"status,omitempty"`
	// Progress is what a step_progress line says in fields, when the line
	// is one the plugin kits write (ParseProgress); nil otherwise.
	Progress *Progress `json:"progress,omitempty"`
	// WriteOutage is the run's write-outage window (journal.Run.WriteOutage,
	// the same object as `upshift status --json` shows): on the
	// write_outage event, and on run_finished when the run went read-only.
	WriteOutage *journal.Outage `json:"write_outage,omitempty"`
}

// Progress is a progress line's content as fields. Plugins send text
// lines over the wire; the load balancer and node kits' wait loops write
// them in a few fixed shapes, which ParseProgress reads. A field is set
// only when the line says it.
type Progress struct {
	// Phase is the wait the line reports: drain, enable, wait_healthy,
	// start, stop, sleep, lock.
	Phase string `json:"phase,omitempty"`
	// Server is the load balancer's server (or node) the line is about.
	Server string `json:"server,omitempty"`
	// Sessions left on a draining server (HAProxy's scur + qcur).
	Sessions *int64 `json:"sessions,omitempty"`
	// Workers of nginx's previous configuration still finishing requests.
	Workers *int `json:"workers,omitempty"`
	// HealthyChecks of HealthyNeeded consecutive health checks have passed
	// (HAProxy's rise counter while a server comes UP).
	HealthyChecks *int `json:"healthy_checks,omitempty"`
	HealthyNeeded *int `json:"healthy_needed,omitempty"`
	// Healthy is false while a node's health check fails (wait_healthy).
	Healthy *bool `json:"healthy,omitempty"`
	// Waited and Timeout: how long the wait has lasted, and its limit.
	Waited  time.Duration `json:"waited_ns,omitempty"`
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// Bytes or Rows done of BytesTotal or RowsTotal (a database copy,
	// dump or restore, as dbkit's meter reports them: rounded as shown,
	// 412 MiB, 2.5M rows), Percent of the total, Left the time estimated.
	Bytes      *int64        `json:"bytes,omitempty"`
	BytesTotal *int64        `json:"bytes_total,omitempty"`
	Rows       *int64        `json:"rows,omitempty"`
	RowsTotal  *int64        `json:"rows_total,omitempty"`
	Percent    *int          `json:"percent,omitempty"`
	Left       time.Duration `json:"left_ns,omitempty"`
	// Pid of a process a start launched or a stop signalled.
	Pid int `json:"pid,omitempty"`
	// Detail is the reason the wait goes on (a health check's answer).
	Detail string `json:"detail,omitempty"`
}

// The kits' line shapes; see plugins/haproxy/lb.go, plugins/nginx/lb.go,
// plugins/sdk/nodekit/health.go, plugins/process/localnode, testkit.
var (
	reWaitSessions = regexp.MustCompile(`^(\S+): waiting for (\d+) in-flight session\(s\)(?:, (.*))? \((\S+) of (\S+)\)$`)
	reDrainSet     = regexp.MustCompile(`^(\S+): drain set \(was .*, (\d+) sessions\)$`)
	reDraining     = regexp.MustCompile(`^(\S+) is already draining \((\d+) sessions\)$`)
	reNoSessions   = regexp.MustCompile(`^(\S+): no sessions left after (\S+); now in maintenance$`)
	reWorkers      = regexp.MustCompile(`^(\S+)(?:: waiting for| is already marked down; waiting for) (\d+) (?:old )?nginx worker\(s\)`)
	reEnableState  = regexp.MustCompile(`^(\S+): (UP|DOWN|NOLB|DRAIN|MAINT)\S*(?: (\d+)/(\d+))?[^(]*\((\S+) of (\S+)\)$`)
	reReadySet     = regexp.MustCompile(`^(\S+): ready set \(was .*\); waiting for the health check to report UP$`)
	reUpAfter      = regexp.MustCompile(`^(\S+): UP after (\S+)$`)
	reNginxHealth  = regexp.MustCompile(`^waiting for (\S+) to answer \S+: (.*)$`)
	reStarted      = regexp.MustCompile(`^started pid (\d+), waiting for it to answer on (\S+)$`)
	reSigterm      = regexp.MustCompile(`^sent SIGTERM to pid (\d+)$`)
	reSleeping     = regexp.MustCompile(`^sleeping (\S+)$`)
	reMeter        = regexp.MustCompile(`^([\w.-]+): ([\d.]+)(k|M)? ?(B|KiB|MiB|GiB|rows)(?: of ([\d.]+)(k|M)? ?(B|KiB|MiB|GiB|rows) \((\d+)%\))?, [^,]+/s(?:, about (\S+) left)?$`)
	reLockHeld     = regexp.MustCompile(`^lock "[^"]*" is held by (.*); waiting up to (\S+)$`)
)

// ParseProgress returns the fields a progress line of the plugin kits
// says, or nil for a line of another shape (which stays text only).
func ParseProgress(line string) *Progress {
	dur := func(s string) time.Duration { d, _ := time.ParseDuration(s); return d }
	i64 := func(s string) *int64 { n, _ := strconv.ParseInt(s, 10, 64); return &n }
	num := func(s string) *int { n, _ := strconv.Atoi(s); return &n }
	if m := reWaitSessions.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "drain", Server: m[1], Sessions: i64(m[2]), Detail: m[3], Waited: dur(m[4]), Timeout: dur(m[5])}
	}
	if m := reDrainSet.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "drain", Server: m[1], Sessions: i64(m[2])}
	}
	if m := reDraining.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "drain", Server: m[1], Sessions: i64(m[2])}
	}
	if m := reNoSessions.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "drain", Server: m[1], Sessions: i64("0"), Waited: dur(m[2])}
	}
	if m := reWorkers.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "drain", Server: m[1], Workers: num(m[2])}
	}
	if m := reUpAfter.FindStringSubmatch(line); m != nil {
		up := true
		return &Progress{Phase: "enable", Server: m[1], Healthy: &up, Waited: dur(m[2])}
	}
	if m := reReadySet.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "enable", Server: m[1]}
	}
	if m := reEnableState.FindStringSubmatch(line); m != nil {
		p := &Progress{Phase: "enable", Server: m[1], Waited: dur(m[5]), Timeout: dur(m[6]), Detail: strings.TrimSpace(strings.TrimPrefix(line[:strings.LastIndexByte(line, '(')], m[1]+":"))}
		if m[2] == "DOWN" && m[3] != "" {
			// HAProxy shows a DOWN server coming up as "DOWN 1/2": one of
			// the two checks `rise` asks for has passed.
			p.HealthyChecks, p.HealthyNeeded = num(m[3]), num(m[4])
		}
		return p
	}
	if m := reNginxHealth.FindStringSubmatch(line); m != nil {
		down := false
		return &Progress{Phase: "enable", Server: m[1], Healthy: &down, Detail: m[2]}
	}
	if detail, ok := strings.CutPrefix(line, "waiting: "); ok {
		down := false
		return &Progress{Phase: "wait_healthy", Healthy: &down, Detail: detail}
	}
	if m := reStarted.FindStringSubmatch(line); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Progress{Phase: "start", Pid: n, Detail: "waiting for it to answer on " + m[2]}
	}
	if m := reSigterm.FindStringSubmatch(line); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Progress{Phase: "stop", Pid: n}
	}
	if m := reSleeping.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "sleep", Timeout: dur(m[1])}
	}
	if m := reMeter.FindStringSubmatch(line); m != nil {
		p := &Progress{Phase: m[1], Left: dur(m[9])}
		done, rows := amount(m[2], m[3], m[4])
		if rows {
			p.Rows = &done
		} else {
			p.Bytes = &done
		}
		if m[5] != "" {
			total, _ := amount(m[5], m[6], m[7])
			if rows {
				p.RowsTotal = &total
			} else {
				p.BytesTotal = &total
			}
			p.Percent = num(m[8])
		}
		return p
	}
	if m := reLockHeld.FindStringSubmatch(line); m != nil {
		return &Progress{Phase: "lock", Detail: "held by " + m[1], Timeout: dur(m[2])}
	}
	return nil
}

// amount reads a meter's amount: 412 MiB, 1.5 KiB, 2.5M rows.
func amount(n, suffix, unit string) (int64, bool) {
	f, _ := strconv.ParseFloat(n, 64)
	switch suffix {
	case "k":
		f *= 1e3
	case "M":
		f *= 1e6
	}
	switch unit {
	case "KiB":
		f *= 1 << 10
	case "MiB":
		f *= 1 << 20
	case "GiB":
		f *= 1 << 30
	}
	return int64(f + 0.5), unit == "rows"
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

// StampRunID returns a sink that gives every event the id runID returns
// when it has none, and reads a step_progress line's fields
// (ParseProgress), before passing it to s. runID is asked at each event: a
// new run's id is made once the journal is opened.
func StampRunID(s Sink, runID func() string) Sink {
	return stamp{s, runID}
}

type stamp struct {
	next  Sink
	runID func() string
}

func (s stamp) Emit(e Event) {
	if e.RunID == "" && s.runID != nil {
		e.RunID = s.runID()
	}
	if e.Type == StepProgress && e.Progress == nil {
		e.Progress = ParseProgress(e.Message)
	}
	s.next.Emit(e)
}

// JSONSink writes one JSON object per line, for CI and log shippers. The
// first line names the format (FormatLine); docs/json.md is its contract.
type JSONSink struct {
	mu      sync.Mutex
	enc     *json.Encoder
	started bool
}

// NewJSONSink returns a sink writing JSON lines to w.
func NewJSONSink(w io.Writer) *JSONSink { return &JSONSink{enc: json.NewEncoder(w)} }

// formatHeader is the first line of a stream.
type formatHeader struct {
	Time          time.Time `json:"time"`
	Type          EventType `json:"type"`
	RunID         string    `json:"run_id"`
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
}

// Emit writes e as one line, after the format line if e is the first.
func (s *JSONSink) Emit(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		_ = s.enc.Encode(formatHeader{Time: e.Time, Type: FormatLine, RunID: e.RunID, Format: JSONFormat, FormatVersion: JSONFormatVersion})
	}
	_ = s.enc.Encode(e)
}
