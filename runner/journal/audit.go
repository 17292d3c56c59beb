// Who ran a run, and the write-outage window its steps show.

package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
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
//
// A run that returned the cluster to where it began (it failed or was
// stopped before its point of no return) closes no window: it undid
// read-only instead, and Reopened is when that undo finished (the old
// version takes writes again). The journal then keeps the undo's record in
// place of read_only's, so From is zero unless the caller knew it (the
// run's own event stream does).
type Outage struct {
	From     time.Time    `json:"from,omitzero"`
	To       time.Time    `json:"to,omitzero"`
	Item     string       `json:"item,omitempty"` // the key of the first item enabled, e.g. "node-1"
	Reopened time.Time    `json:"reopened,omitzero"`
	Parts    []OutagePart `json:"parts,omitempty"`
}

// The states of a window (Outage.State, "state" in its JSON).
const (
	OutageClosed   = "closed"   // a node on the new version took writes at To
	OutageOpen     = "open"     // writes are still refused
	OutageReturned = "returned" // read-only was undone at Reopened: the old version takes writes again
)

// State is OutageClosed, OutageOpen or OutageReturned.
func (o *Outage) State() string {
	switch {
	case !o.To.IsZero():
		return OutageClosed
	case !o.Reopened.IsZero():
		return OutageReturned
	}
	return OutageOpen
}

// MarshalJSON adds to the fields the window's state and, once it is
// over, its length in nanoseconds (docs/json.md: durations are integer
// nanoseconds, fields ending in _ns).
func (o Outage) MarshalJSON() ([]byte, error) {
	type plain Outage
	var d time.Duration
	if o.State() != OutageOpen && !o.From.IsZero() {
		d = o.Duration()
	}
	return json.Marshal(struct {
		plain
		State    string        `json:"state"`
		Duration time.Duration `json:"duration_ns,omitempty"`
	}{plain(o), o.State(), d})
}

// OutagePart is one stretch of work inside the window: the backup, the
// copy, the first item's stop to enable.
type OutagePart struct {
	Name string    `json:"name"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// MarshalJSON adds the part's length in nanoseconds.
func (p OutagePart) MarshalJSON() ([]byte, error) {
	type plain OutagePart
	return json.Marshal(struct {
		plain
		Duration time.Duration `json:"duration_ns"`
	}{plain(p), p.To.Sub(p.From)})
}

// Duration is the window's length: until the first node on the new
// version took writes, or until read-only was undone, or, while it is
// open, so far (until now). 0 when its start is not known.
func (o *Outage) Duration() time.Duration {
	switch {
	case o.From.IsZero():
		return 0
	case !o.To.IsZero():
		return o.To.Sub(o.From)
	case !o.Reopened.IsZero():
		return o.Reopened.Sub(o.From)
	}
	return time.Since(o.From)
}

// roundOutage rounds a window's figures as consoles show them.
func roundOutage(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

// Summary is the window in a few words, for a console: its length (or
// "so far (not over)"), then each part's, "6.1s (backup 0.4s, copy 1.2s,
// ...)". Line says what a window that did not close means.
func (o *Outage) Summary() string {
	s := roundOutage(o.Duration())
	if o.State() == OutageOpen {
		s += " so far (not over)"
	}
	if p := o.partsText(); p != "" {
		s += " (" + p + ")"
	}
	return s
}

func (o *Outage) partsText() string {
	var parts []string
	for _, p := range o.Parts {
		parts = append(parts, p.Name+" "+roundOutage(p.To.Sub(p.From)))
	}
	return strings.Join(parts, ", ")
}

// Line is the window as one sentence for a person, whatever its state;
// at formats a time (local or UTC, as the caller shows times).
//
//	writes refused for 6.1s (backup 0.4s, copy 1.2s, first item's stop to enable (node-1) 4.3s)
//	writes refused since 10:15:03 UTC, not reopened yet (12s so far; backup 0.4s, copy 1.2s)
//	writes refused for 3.2s from 10:15:03 UTC, then taken again by the old version at 10:15:07 UTC: the run returned the cluster to where it began before any node on the new version took writes
func (o *Outage) Line(at func(time.Time) string) string {
	parts := o.partsText()
	switch o.State() {
	case OutageClosed:
		return "writes refused for " + o.Summary()
	case OutageReturned:
		const why = "the run returned the cluster to where it began before any node on the new version took writes"
		if o.From.IsZero() {
			return "writes refused until " + at(o.Reopened) + ", then taken again by the old version: " + why + " (when read-only began is not kept in the journal once it is undone)"
		}
		return "writes refused for " + roundOutage(o.Duration()) + " from " + at(o.From) + ", then taken again by the old version at " + at(o.Reopened) + ": " + why
	}
	if o.From.IsZero() {
		return "writes may still be refused: the run began to undo read-only, returning the cluster to where it began, and that undo did not finish"
	}
	s := "writes refused since " + at(o.From) + ", not reopened yet (" + roundOutage(o.Duration()) + " so far"
	if parts != "" {
		s += "; " + parts
	}
	return s + ")"
}

// The runner's notes on a step it undid (runner/rollback.go): the undo
// finished, or began and was not recorded as finished; and its error when
// the undo failed.
const (
	undoneNote      = "undone by "
	undoStartedNote = "rollback: "
	undoFailedError = "its undo "
)

// WriteOutage computes the run's write-outage window from its step
// records, by the standard actions' names: the last read_only step to
// finish opens it, the first enable to finish after that closes it. The
// parts are the backup and backup_data steps (as one span), the copy
// steps, and the first item's stop (its start) to enable (its end). When
// every read_only step was undone (the run returned to its start),
// Reopened is when the last undo finished. It is nil when no read_only
// step finished.
func (r *Run) WriteOutage() *Outage {
	if r == nil {
		return nil
	}
	var o Outage
	undoUnsure := false
	for _, s := range r.Steps {
		if actionVerb(s.Action) != "read_only" {
			continue
		}
		switch {
		case s.Status == Done:
			if s.EndedAt.After(o.From) {
				o.From = s.EndedAt
			}
		case s.Status == RolledBack && strings.HasPrefix(s.Note, undoneNote) && !s.EndedAt.IsZero():
			if s.EndedAt.After(o.Reopened) {
				o.Reopened = s.EndedAt
			}
		case s.Status == RolledBack && strings.HasPrefix(s.Note, undoStartedNote),
			s.Status == Failed && strings.HasPrefix(s.Error, undoFailedError):
			undoUnsure = true
		}
	}
	switch {
	case !o.From.IsZero():
		// Some node is still read-only: the window is not over by undoing.
		o.Reopened = time.Time{}
	case undoUnsure:
		return &Outage{}
	case !o.Reopened.IsZero():
		return &o // the records of what ran inside it were replaced by their undos'
	default:
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
			// A rolled-back record holds its undo's times, not the step's.
			if !match(s) || s.Status != Done && s.Status != Failed || s.StartedAt.IsZero() || s.EndedAt.IsZero() {
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
		// Taking the first item out of the load balancer: with backup and
		// copy when the playbook lets it start with them, else after.
		span(firstDrainPart+" ("+key+")", func(s *Step) bool {
			return itemKey(s.Address) == key && actionVerb(s.Action) == "drain" && s.Status == Done
		})
		span(firstItemPart+" ("+key+")", func(s *Step) bool {
			v := actionVerb(s.Action)
			return itemKey(s.Address) == key && (v == "stop" || v == "enable") && s.Status == Done
		})
	}
	return &o
}

// firstItemPart names the part from the first item's stop to its enable
// (followed by the item's key).
const firstItemPart = "first item's stop to enable"

// firstDrainPart names the first item's drain (followed by its key).
const firstDrainPart = "first item's drain"

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

// OutageEstimate is what a cluster's past runs say its next write outage
// will be: the median of the windows of its most recent runs that
// finished with one closed.
type OutageEstimate struct {
	Duration time.Duration `json:"duration_ns"`
	// Runs are the ids of the runs it is the median of, newest first.
	Runs  []string       `json:"runs"`
	Parts []EstimatePart `json:"parts,omitempty"`
}

// EstimatePart is the median of one part of the window, over the runs
// that had it.
type EstimatePart struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	// Parallel: it overlapped the part before it in every run that had
	// both (the backup and the copy both run once the cluster is
	// read-only): the window pays for the longer, not the sum.
	Parallel bool `json:"parallel,omitempty"`
}

// EstimateRuns is how many closed windows an estimate takes at most.
const EstimateRuns = 5

// EstimateOutage is the estimate of runs (newest first, all of one
// cluster): the median over the newest EstimateRuns that are done and
// whose window closed. nil when none is.
func EstimateOutage(runs []*Run) *OutageEstimate {
	var windows []*Outage
	e := &OutageEstimate{}
	for _, r := range runs {
		if r == nil || r.Status != Done {
			continue
		}
		if o := r.WriteOutage(); o != nil && o.State() == OutageClosed && !o.From.IsZero() {
			windows = append(windows, o)
			e.Runs = append(e.Runs, r.ID)
		}
		if len(windows) == EstimateRuns {
			break
		}
	}
	if len(windows) == 0 {
		return nil
	}
	var total []time.Duration
	parts := map[string][]time.Duration{}
	parallel := map[string]bool{}
	var order []string
	for _, o := range windows {
		total = append(total, o.Duration())
		for i, p := range o.Parts {
			name := partKind(p.Name)
			if _, seen := parts[name]; !seen {
				order = append(order, name)
				parallel[name] = i > 0
			}
			parts[name] = append(parts[name], p.To.Sub(p.From))
			if i == 0 || o.Parts[i-1].To.Before(p.From) || p.To.Before(o.Parts[i-1].From) {
				parallel[name] = false
			}
		}
	}
	e.Duration = median(total)
	for _, name := range order {
		e.Parts = append(e.Parts, EstimatePart{Name: name, Duration: median(parts[name]), Parallel: parallel[name]})
	}
	return e
}

// partKind is a part's name without the item it names: the first item
// differs from run to run.
func partKind(name string) string {
	for _, kind := range []string{firstItemPart, firstDrainPart} {
		if strings.HasPrefix(name, kind) {
			return kind
		}
	}
	return name
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// roughly rounds an estimate as a person reads one: hundredths of a
// second under a second (a local backup takes milliseconds), tenths under
// a minute, whole seconds above.
func roughly(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Text is the estimate in one line, "about 2m10s (backup 1m40s, copy
// 1m55s in parallel, first item's stop to enable 15s), from the last 3
// runs of this cluster".
func (e *OutageEstimate) Text() string {
	s := "about " + roughly(e.Duration)
	var parts []string
	for _, p := range e.Parts {
		t := p.Name + " " + roughly(p.Duration)
		if p.Parallel {
			t += " in parallel"
		}
		parts = append(parts, t)
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if n := len(e.Runs); n == 1 {
		s += ", from the last run of this cluster"
	} else {
		s += fmt.Sprintf(", from the last %d runs of this cluster", n)
	}
	return s
}

// recentScan is how many of a cluster's newest runs an estimate reads at
// most, to find EstimateRuns closed windows among failed or aborted ones.
const recentScan = 4 * EstimateRuns

// RecentRuns returns cluster c's newest runs in the state folder dir,
// newest first (its current run, then its history), at most recentScan,
// without sealed results. It creates nothing: a folder that holds no run
// of c (none at all, or another cluster's under the same short id) gives
// none.
func RecentRuns(dir string, c *Cluster) ([]*Run, error) {
	cdir := filepath.Join(dir, clustersName, safeName(c.Short()))
	have, err := readCluster(filepath.Join(cdir, clusterName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case have.ID != c.ID:
		return nil, nil // another cluster's: none of this one's business
	}
	j := &Journal{dir: cdir}
	var out []*Run
	cur, err := j.Load()
	if err != nil {
		return nil, err
	}
	if cur != nil {
		out = append(out, cur)
	}
	hist, err := j.History()
	if err != nil {
		return nil, err
	}
	for i := len(hist) - 1; i >= 0 && len(out) < recentScan; i-- {
		r, err := LoadFile(hist[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RecentRuns is RecentRuns for state kept in PostgreSQL: cluster c's
// newest runs, current or past, newest first, without sealed results.
func (s *PGStore) RecentRuns(ctx context.Context, c *Cluster) ([]*Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT run_id FROM upshift_runs WHERE cluster_id = $1 ORDER BY started_at DESC, run_id DESC LIMIT $2`, c.ID, recentScan)
	if err != nil {
		return nil, s.scrub(fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err))
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, s.scrub(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.scrub(err)
	}
	var out []*Run
	for _, id := range ids {
		r, err := s.loadRun(ctx, s.pool, c.ID, id, false)
		if err != nil {
			return nil, s.scrub(err)
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, k int) bool { return out[i].StartedAt.After(out[k].StartedAt) })
	return out, nil
}
