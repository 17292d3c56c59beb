// The traffic guards' samples: each reading of a load balancer's counters a
// rollout's guard takes is kept with the run, so that what the load
// balancer saw during the upgrade (requests and errors per second) can be
// shown afterwards (`upshift status --json`, Run.Rates).
//
// A sample is a log record of its own (`"sample"` instead of `"step"`),
// appended like Record: not waited for, made durable by the next Update,
// Sync or Finish, so a crash loses at most the last few samples and never
// a step record made after them. Compaction folds them into the snapshot
// (`"samples":[...]`, one per line, after the steps). A run with samples is
// written as format 3; before the first sample is appended the snapshot is
// rewritten as 3, so a log holding samples never follows a snapshot an
// older upshift would take for one it understands.
//
// A guard's probes add `"probes":[...]` to its samples: an optional field
// of format 3 that an older upshift reading the run ignores (it then sees
// a probe-only guard's samples as samples without counters, and leaves
// them out of Rates as it does failed ones), so the format stays 3.

package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// formatWithoutSamples is the format of a run that has no samples.
const formatWithoutSamples = 2

// Counters are a load balancer's cumulative traffic counters (the standard
// metrics action's), for a backend or one server.
type Counters struct {
	Requests         int64 `json:"requests"`
	HTTP1xx          int64 `json:"http_1xx,omitempty"`
	HTTP2xx          int64 `json:"http_2xx,omitempty"`
	HTTP3xx          int64 `json:"http_3xx,omitempty"`
	HTTP4xx          int64 `json:"http_4xx,omitempty"`
	HTTP5xx          int64 `json:"http_5xx,omitempty"`
	ConnectionErrors int64 `json:"connection_errors,omitempty"`
	ResponseErrors   int64 `json:"response_errors,omitempty"`
	Retries          int64 `json:"retries,omitempty"`
	Redispatches     int64 `json:"redispatches,omitempty"`
	Sessions         int64 `json:"sessions,omitempty"` // current, not cumulative
}

// Errors is what a guard counts as errors: http_5xx + connection_errors +
// response_errors.
func (c Counters) Errors() int64 { return c.HTTP5xx + c.ConnectionErrors + c.ResponseErrors }

// ServerCounters are one server's counters.
type ServerCounters struct {
	Name string `json:"name"`
	Counters
}

// Sample is one reading of a load balancer's counters by a rollout's
// guard.
type Sample struct {
	Rollout string    `json:"rollout"`
	At      time.Time `json:"at"`
	// Error is set when the metrics call failed; the counters are then
	// empty.
	Error   string    `json:"error,omitempty"`
	Backend *Counters `json:"backend,omitempty"`
	// Servers are the servers whose errors grew since the guard's sample
	// before (every server in a guard's first sample), with their
	// cumulative counters; the others are left out to keep the journal
	// small.
	Servers []ServerCounters `json:"servers,omitempty"`
	// Probes are the guard's probes' cumulative counts since the rollout's
	// first instance start, one per probe.
	Probes []ProbeCounts `json:"probes,omitempty"`
}

// ProbeCounts are a guard's probe's cumulative counts: its requests, and
// those that failed (an unexpected status, a connection error or a
// timeout).
type ProbeCounts struct {
	URL      string `json:"url"`
	Requests int64  `json:"requests"`
	Failed   int64  `json:"failed"`
}

// RecordSample appends a guard's sample to the run. Like Record it does not
// wait for the sample to be durable.
func (j *Journal) RecordSample(s Sample) error {
	if s.Rollout == "" {
		return errors.New("journal: sample has no rollout")
	}
	if s.At.IsZero() {
		s.At = j.now()
	}
	b, err := json.Marshal(&s)
	if err != nil {
		return fmt.Errorf("journal: sample: %w", err)
	}
	if j.db != nil {
		return j.db.recordSample(s, b)
	}
	j.mu.Lock()
	first := j.run == nil || len(j.run.Samples) == 0
	j.mu.Unlock()
	if first {
		// The snapshot says format 3 before a sample is in the log.
		j.ioMu.Lock()
		defer j.ioMu.Unlock()
		j.mu.Lock()
		defer j.mu.Unlock()
		if err := j.prepare(); err != nil {
			return err
		}
		j.addSample(s, b)
		return j.compact()
	}
	if err := j.lockPrepared(); err != nil {
		return err
	}
	j.addSample(s, b)
	j.mu.Unlock()
	if j.ioMu.TryLock() {
		defer j.ioMu.Unlock()
		return j.writePending(false)
	}
	return nil // a flush is in progress; the next one takes this record
}

// addSample appends a sample's record. Caller holds mu, j prepared.
func (j *Journal) addSample(s Sample, sampleJSON []byte) {
	now := j.now()
	j.seq++
	start := len(j.pending)
	b := append(j.pending, `{"seq":`...)
	b = strconv.AppendUint(b, j.seq, 10)
	b = append(b, `,"run":`...)
	b = append(b, j.idJSON...)
	b = append(b, `,"at":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","sample":`...)
	b = append(b, sampleJSON...)
	b = appendSum(b, start)
	j.pending = append(b, '\n')
	j.run.Samples = append(j.run.Samples, s)
	j.run.UpdatedAt = now
	j.records++
}

// appendSamples adds `,"samples":[...]` (one per line) to a snapshot being
// written; nothing when there are none.
func appendSamples(b []byte, samples []Sample) ([]byte, error) {
	if len(samples) == 0 {
		return b, nil
	}
	b = append(b, `,"samples":[`...)
	for i := range samples {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		s, err := json.Marshal(&samples[i])
		if err != nil {
			return nil, err
		}
		b = append(b, s...)
	}
	return append(b, "\n]"...), nil
}

// Rate is what the load balancer saw between two successful samples of a
// rollout's guard, per second.
type Rate struct {
	Rollout string    `json:"rollout"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	// Requests and Errors are per second; a counter that went back (the
	// load balancer restarted) counts from zero.
	Requests float64 `json:"requests_per_second"`
	Errors   float64 `json:"errors_per_second"`
}

// Rates returns, for each rollout's guard, the backend's requests and
// errors per second between consecutive successful samples, in sample
// order. Failed samples are left out (the next rate spans them).
func (r *Run) Rates() []Rate {
	if r == nil {
		return nil
	}
	last := map[string]*Sample{}
	var out []Rate
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.Error != "" || s.Backend == nil {
			continue
		}
		if p := last[s.Rollout]; p != nil && s.At.After(p.At) {
			secs := s.At.Sub(p.At).Seconds()
			out = append(out, Rate{
				Rollout:  s.Rollout,
				From:     p.At,
				To:       s.At,
				Requests: float64(grew(p.Backend.Requests, s.Backend.Requests)) / secs,
				Errors:   float64(grew(p.Backend.Errors(), s.Backend.Errors())) / secs,
			})
		}
		last[s.Rollout] = s
	}
	return out
}

// grew is how much a cumulative counter grew from a to b; a counter that
// went back was reset, and counts from zero.
func grew(a, b int64) int64 {
	if b < a {
		return b
	}
	return b - a
}
