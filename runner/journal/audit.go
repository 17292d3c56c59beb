// Who ran a run, and the write-outage window its steps show.

package journal

import (
	"os"
	"os/user"
	"strings"
	"time"
)

// Audit says who ran a run, from where, with what: recorded when the run
// begins, kept in its history, shown by `upshift status`.
type Audit struct {
	User    string `json:"user,omitempty"`
	Host    string `json:"host,omitempty"`
	Version string `json:"version,omitempty"` // upshift's version
	// Command is the command line, -var values hidden (RedactArgs).
	Command string `json:"command,omitempty"`
}

// CurrentAudit describes this process, running upshift version.
func CurrentAudit(version string) *Audit {
	a := &Audit{Version: version, Command: strings.Join(RedactArgs(os.Args), " ")}
	a.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		a.User = u.Username
	} else {
		a.User = os.Getenv("USER")
	}
	return a
}

// SetAudit makes the next Begin record a (when the run it is given names
// none): the runner builds the run, the command knows who runs it.
func (j *Journal) SetAudit(a *Audit) {
	j.mu.Lock()
	j.audit = a
	j.mu.Unlock()
}

// Outage is the window in which a run kept the cluster from taking writes:
// from when it went read-only (its read_only steps finished) until the
// first rollout item's enable finished (an upgraded node took writes
// again). To is zero while the window is still open.
type Outage struct {
	From  time.Time    `json:"from"`
	To    time.Time    `json:"to,omitzero"`
	Item  string       `json:"item,omitempty"` // the key of the first item enabled, e.g. "node-1"
	Parts []OutagePart `json:"parts,omitempty"`
}

// OutagePart is one stretch of work inside the window: the backup, the
// copy, the first item's stop to enable.
type OutagePart struct {
	Name string    `json:"name"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Duration is the window's length, or how long it has been open so far
// (until now) when it has not closed.
func (o *Outage) Duration() time.Duration {
	if o.To.IsZero() {
		return time.Since(o.From)
	}
	return o.To.Sub(o.From)
}

// Summary is the window in one line, for a console: its length (or "not
// over"), then each part's, "6.1s (backup 0.4s, copy 1.2s, ...)".
func (o *Outage) Summary() string {
	round := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	s := round(o.Duration())
	if o.To.IsZero() {
		s += " so far (not over)"
	}
	var parts []string
	for _, p := range o.Parts {
		parts = append(parts, p.Name+" "+round(p.To.Sub(p.From)))
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// WriteOutage computes the run's write-outage window from its step
// records, by the standard actions' names: the last read_only step to
// finish opens it, the first enable to finish after that closes it. The
// parts are the backup and backup_data steps (as one span), the copy
// steps, and the first item's stop (its start) to enable (its end). It is
// nil when no read_only step finished.
func (r *Run) WriteOutage() *Outage {
	if r == nil {
		return nil
	}
	var o Outage
	for _, s := range r.Steps {
		if actionVerb(s.Action) == "read_only" && s.Status == Done && s.EndedAt.After(o.From) {
			o.From = s.EndedAt
		}
	}
	if o.From.IsZero() {
		return nil
	}
	var enable *Step
	for _, s := range r.Steps {
		if actionVerb(s.Action) == "enable" && s.Status == Done && s.EndedAt.After(o.From) && (enable == nil || s.EndedAt.Before(enable.EndedAt)) {
			enable = s
		}
	}
	if enable != nil {
		o.To = enable.EndedAt
		o.Item = itemKey(enable.Address)
	}
	span := func(name string, match func(*Step) bool) {
		var p OutagePart
		for _, s := range r.Steps {
			if !match(s) || s.StartedAt.IsZero() || s.EndedAt.IsZero() {
				continue
			}
			if p.From.IsZero() || s.StartedAt.Before(p.From) {
				p.From = s.StartedAt
			}
			if s.EndedAt.After(p.To) {
				p.To = s.EndedAt
			}
		}
		if !p.From.IsZero() {
			p.Name = name
			o.Parts = append(o.Parts, p)
		}
	}
	span("backup", func(s *Step) bool { v := actionVerb(s.Action); return v == "backup" || v == "backup_data" })
	span("copy", func(s *Step) bool { return actionVerb(s.Action) == "copy" })
	if enable != nil {
		key := o.Item
		span("first item's stop to enable ("+key+")", func(s *Step) bool {
			v := actionVerb(s.Action)
			return itemKey(s.Address) == key && (v == "stop" || v == "enable") && s.Status == Done
		})
	}
	return &o
}

// actionVerb is the action's own name: "read_only" of
// "node_pool.cluster.read_only".
func actionVerb(action string) string {
	return action[strings.LastIndexByte(action, '.')+1:]
}

// itemKey is the key of an instance address: "node-1" of
// `step.enable["node-1"]`, "" for an address without one.
func itemKey(addr string) string {
	i := strings.Index(addr, `["`)
	if i < 0 || !strings.HasSuffix(addr, `"]`) {
		return ""
	}
	return addr[i+2 : len(addr)-2]
}
