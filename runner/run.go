// A run as a whole: its options and result, the walk over the graph, and
// the journal that lets an interrupted run resume where it stopped. What
// happens to one instance is in execute.go, undoing a failed item in
// rollback.go.

package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// PluginInfo identifies the plugin behind a resource, for the journal.
type PluginInfo struct {
	Name     string
	Checksum string
}

// Options configure a run.
type Options struct {
	// Providers are the configured plugin instances, by resource address
	// ("load_balancer.front").
	Providers map[string]plugins.Provider
	// Plugins describe them for the journal, by resource address.
	Plugins map[string]PluginInfo
	// Journal records every step; nil runs without one (tests).
	Journal *journal.Journal
	// Events receives progress; nil discards it.
	Events Sink
	// Parallelism caps how many steps run at once; 0 means 10.
	Parallelism int
	// Stop, when closed, starts no further step; running ones finish.
	Stop <-chan struct{}
	// Digest identifies the playbook and variables of this run.
	Digest string
	// Rerun lists addresses the operator allows to run again although they
	// were in flight when a previous run died and cannot be checked.
	Rerun []string
	// Cluster is the identity of the cluster the playbook points at
	// (Identify): a new run records it, and a journal of another cluster
	// is never resumed. Nil in tests that do not care.
	Cluster *journal.Cluster
	// NewRun begins a new run of the cluster although its last run
	// finished: by default a finished run stays finished, whatever changed
	// in the playbook or its variables.
	NewRun bool
	// Preflight runs the playbook's preflight blocks before a new run
	// begins (not on resume: a cluster halfway through its upgrade is not
	// what they check); a problem returns a *PreflightError and nothing is
	// begun or changed.
	Preflight bool
	// Target, when set, runs one rollout item (by key) and what it waits
	// for, then holds: the run ends paused (gate.go).
	Target string
	// Approver names who continues a run waiting at a gate, for the gate's
	// journal record ("user@host").
	Approver string
}

// Result is how a run ended.
type Result struct {
	// Status is done, failed or paused.
	Status   journal.Status
	Outcomes map[string]*dag.Outcome
	// Failed lists the failed instances.
	Failed []string
	// Resumed is true when the run continued an interrupted one.
	Resumed bool
	// AlreadyDone is true when nothing ran because the cluster's last run
	// had finished (Run is that run).
	AlreadyDone bool
	// RunID is the run's id (run.id in expressions).
	RunID string
	// Run is the journal's header of the run (nil without a journal).
	Run *journal.Run
	// Preflight is what the preflights found (nil when none ran).
	Preflight *PreflightReport
	// PointOfNoReturn is the instance of the step marked point_of_no_return
	// that the run passed; "" when it did not (or the playbook marks none).
	PointOfNoReturn string
	// Returned is set when the run failed or was stopped before its point
	// of no return and was returned to where it began.
	Returned *ReturnReport
	// Standing says where each rollout item stands, when the run failed or
	// stopped after its point of no return.
	Standing []string
	// Guards holds the traffic guards that halted their rollout, by
	// rollout name; the run then failed (or paused).
	Guards map[string]*GuardTrip
	// Hold says where a paused run waits (a gate, or after --target's
	// item); nil otherwise.
	Hold *Hold
}

// PreflightError: a preflight found problems; nothing was begun.
type PreflightError struct{ Report *PreflightReport }

func (e *PreflightError) Error() string { return e.Report.Error() }

// ErrRunFailed is returned when at least one step failed.
var ErrRunFailed = errors.New("the run failed")

// execution is the state of one Run call.
type execution struct {
	g     *Graph
	opts  Options
	start time.Time

	mu      sync.Mutex
	results map[string]cty.Value
	prior   map[string]*journal.Step
	rerun   map[string]bool
	// whenSkipped holds the instances whose `when` was false: done, but
	// nothing ran, so there is nothing to undo.
	whenSkipped map[string]bool
	// blocked holds steps that need the operator before they can run again.
	blocked map[string]string
	// ended is when each instance finished in this run, so a return to the
	// start undoes newest first.
	ended map[string]time.Time
	// ponrAt is the first instance of the point_of_no_return step this run
	// started; "" before.
	ponrAt string
	// guards are the rollouts' traffic guards, by rollout name (guard.go).
	guards map[string]*guard
	// varSecrets are the sensitive variables' string values (scrub.go).
	varSecrets map[string]bool
	// holds are the gates' and --target's holds (gate.go).
	holds *holding
}

// Run executes g: it walks the graph with bounded parallelism, runs each
// instance's action through its provider with the step's timeout and retry
// policy, records every state change in the journal before and after the
// call, and resumes an interrupted run found in the journal: steps done
// are not run again, and a step found in flight is run again only when its
// action is idempotent or its plugin's Check says it did not take effect.
func Run(ctx context.Context, g *Graph, opts Options) (*Result, error) {
	if opts.Events == nil {
		opts.Events = Sinks(nil)
	}
	x := &execution{g: g, opts: opts, start: time.Now(), results: map[string]cty.Value{}, prior: map[string]*journal.Step{}, rerun: map[string]bool{}, whenSkipped: map[string]bool{}, ended: map[string]time.Time{}}
	for _, a := range opts.Rerun {
		x.rerun[a] = true
	}
	if err := x.startHolding(); err != nil {
		return nil, err
	}
	resumed, run, err := x.openJournal()
	var done *AlreadyDoneError
	if errors.As(err, &done) {
		x.emit(Event{Type: RunFinished, Status: string(journal.Done), Message: "nothing to do: " + done.Error()})
		return &Result{Status: journal.Done, AlreadyDone: true, Outcomes: map[string]*dag.Outcome{}, RunID: done.Run.ID, Run: done.Run}, nil
	}
	if err != nil {
		return nil, err
	}
	// From here on, run.id is known to the steps' expressions.
	g.Playbook.SetRunID(run.ID)
	var preflight *PreflightReport
	if !resumed {
		if opts.Preflight && len(g.Preflights) > 0 {
			x.emit(Event{Type: RunStarted, Message: fmt.Sprintf("preflight: %d checks before anything changes", len(g.Preflights))})
			preflight = Preflight(ctx, g, opts.Providers, opts.Events, opts.Parallelism)
			if !preflight.OK() {
				return &Result{Status: journal.Failed, Outcomes: map[string]*dag.Outcome{}, RunID: run.ID, Preflight: preflight}, &PreflightError{Report: preflight}
			}
		}
		if opts.Journal != nil {
			if err := opts.Journal.Begin(run); err != nil {
				return nil, err
			}
		}
	}
	msg := fmt.Sprintf("running %d steps", len(g.Instances))
	if resumed {
		msg = fmt.Sprintf("resuming an interrupted run: %d of %d steps already done", x.doneCount(), len(g.Instances))
	}
	x.emit(Event{Type: RunStarted, Message: msg})

	x.newGuards()
	outcomes, werr := g.DAG.Walk(ctx, dag.WalkOptions{
		Parallelism: opts.Parallelism,
		Stop:        opts.Stop,
		Hold:        x.holds.stop,
		RunAnyway: func(v dag.Vertex) bool {
			inst, ok := v.(*StepInstance)
			return ok && inst.Step.Always
		},
		Skip: func(v dag.Vertex) bool {
			inst, ok := v.(*StepInstance)
			if !ok {
				return false
			}
			if _, done := x.restored(inst); done {
				x.emit(Event{Type: StepRestored, Address: inst.Addr, Action: inst.Step.Run.String(), Key: inst.Key})
				x.settled(inst, nil)
				return true
			}
			return false
		},
	}, x.runVertex)
	x.stopGuards()
	if werr != nil && !errors.Is(werr, dag.ErrStopped) {
		return nil, werr
	}

	hold := x.heldOutcomes(outcomes)
	res := &Result{Outcomes: outcomes, Resumed: resumed, RunID: run.ID, Preflight: preflight, Hold: hold}
	if trips := x.trips(); len(trips) > 0 {
		res.Guards = trips
	}
	tripped := len(res.Guards) > 0
	if opts.Journal != nil {
		res.Run = run
	}
	for _, inst := range g.Instances {
		out := outcomes[inst.Addr]
		switch out.State {
		case dag.Failed:
			res.Failed = append(res.Failed, inst.Addr)
		case dag.Skipped:
			if err := x.record(inst, journal.Step{Status: journal.Skipped, Error: "skipped: " + out.Cause + " failed"}); err != nil {
				return nil, fmt.Errorf("recording %s as skipped: %w", inst.Addr, err)
			}
			x.emit(Event{Type: StepSkipped, Address: inst.Addr, Key: inst.Key, Message: out.Cause + " failed"})
		}
	}

	// A hold is a pause the playbook or the operator asked for: nothing is
	// undone, as after a stop there would be before the point of no return.
	stopped := errors.Is(werr, dag.ErrStopped) && hold == nil
	switch {
	case (len(res.Failed) > 0 || stopped || tripped) && x.beforePointOfNoReturn():
		res.Returned = x.returnToStart(ctx, outcomes)
	case len(res.Failed) > 0 || tripped:
		x.rollback(ctx, outcomes)
	}
	if at, passed := x.pointOfNoReturnPassed(); passed {
		res.PointOfNoReturn = at
		if len(res.Failed) > 0 || stopped || tripped {
			res.Standing = append(x.standing(outcomes), x.guardStanding()...)
		}
	}
	switch {
	case (len(res.Failed) > 0 || tripped) && x.pauseRequested(res.Failed):
		res.Status = journal.Paused
	case len(res.Failed) > 0 || tripped:
		res.Status = journal.Failed
	case hold != nil:
		res.Status = journal.Paused
	case errors.Is(werr, dag.ErrStopped):
		res.Status = journal.Stopped
	default:
		res.Status = journal.Done
	}
	if opts.Journal != nil {
		var ending *journal.Ending
		if res.Status != journal.Done {
			ending = &journal.Ending{PointOfNoReturn: res.PointOfNoReturn, Standing: res.Standing}
			if res.Returned != nil {
				ending.Returned = res.Returned.Summary()
			}
		}
		if err := opts.Journal.FinishWith(res.Status, ending); err != nil {
			return res, fmt.Errorf("recording the end of the run: %w", err)
		}
	}
	summary := fmt.Sprintf("%d steps done", countState(outcomes, dag.Done))
	if n := len(res.Failed); n > 0 {
		summary += fmt.Sprintf(", %d failed (%s)", n, strings.Join(res.Failed, ", "))
	}
	if n := countState(outcomes, dag.Skipped); n > 0 {
		summary += fmt.Sprintf(", %d skipped", n)
	}
	if n := countState(outcomes, dag.NotStarted); n > 0 {
		summary += fmt.Sprintf(", %d not started", n)
	}
	if tripped {
		summary += "; " + guardSummary(res.Guards)
	}
	if res.Returned != nil {
		summary += "; " + res.Returned.Summary()
	}
	if hold != nil && res.Status == journal.Paused {
		summary += "; paused " + hold.String()
	}
	x.emit(Event{Type: RunFinished, Status: string(res.Status), Message: summary, Duration: time.Since(x.start)})
	if res.Status != journal.Done {
		return res, ErrRunFailed
	}
	return res, nil
}

func countState(out map[string]*dag.Outcome, s dag.State) int {
	n := 0
	for name, o := range out {
		if o.State == s && !strings.HasSuffix(name, "[*]") && !strings.HasPrefix(name, "rollout.") && !strings.HasPrefix(name, "gate.") {
			n++
		}
	}
	return n
}

// AlreadyDoneError: the cluster's last run finished, and a new one was
// not asked for.
type AlreadyDoneError struct {
	Run     *journal.Run
	Cluster string // short id, "" when unknown
}

func (e *AlreadyDoneError) Error() string {
	who := "this cluster"
	if e.Cluster != "" {
		who = "cluster " + e.Cluster
	}
	return fmt.Sprintf("run %s of %s finished at %s; a finished run stays finished, whatever changed in the playbook or its variables (--new-run begins a new upgrade)",
		e.Run.ID, who, e.Run.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// ClusterMismatchError: the journal holds a run of another cluster, which
// is never resumed.
type ClusterMismatchError struct {
	Run       *journal.Run
	Journal   string // the journal's cluster id
	ThisOne   string // this playbook's cluster id
	Directory string
}

func (e *ClusterMismatchError) Error() string {
	return fmt.Sprintf("the journal in %s holds run %s of cluster %s, not of this cluster %s: it is not resumed, and left alone",
		e.Directory, e.Run.ID, short(e.Journal), short(e.ThisOne))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// NewRunID makes a run id: its UTC start time, then 12 random hex digits,
// e.g. 20261125T101500Z-4f2a1c9b0e3d. It sorts by time and makes a good
// folder name (backups go to a folder per run).
func NewRunID(now time.Time) string {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id)
}

// openJournal continues an unfinished run or begins a new one; it returns
// whether it resumed, and the run. A finished run is not begun again unless
// NewRun: a runner started again after finishing (or with other variables)
// must not upgrade the cluster twice, nor overwrite its backups.
func (x *execution) openJournal() (bool, *journal.Run, error) {
	j := x.opts.Journal
	if j == nil {
		return false, &journal.Run{ID: NewRunID(time.Now())}, nil
	}
	prev, err := j.Load()
	if err != nil {
		return false, nil, err
	}
	var cluster string
	if x.opts.Cluster != nil {
		cluster = x.opts.Cluster.ID
	}
	if prev != nil && prev.Cluster != "" && cluster != "" && prev.Cluster != cluster {
		return false, nil, &ClusterMismatchError{Run: prev, Journal: prev.Cluster, ThisOne: cluster, Directory: j.Path()}
	}
	if prev != nil && prev.Status == journal.Done && !x.opts.NewRun {
		return false, nil, &AlreadyDoneError{Run: prev, Cluster: short(cluster)}
	}
	if prev != nil && prev.Resumable() {
		if x.opts.NewRun {
			return false, nil, fmt.Errorf("run %s of this cluster is %s, not finished: `upshift run` without --new-run resumes it, `upshift abort` gives it up", prev.ID, prev.Status)
		}
		for addr, s := range prev.Steps {
			x.prior[addr] = s
		}
		if prev.Digest != "" && x.opts.Digest != "" && !j.SameDigest(prev, x.opts.Digest) {
			// Fixing the cause of a failure often means changing a
			// variable: the run resumes, with the new values, and says so.
			x.emit(Event{Type: RunStarted, Message: "note: the playbook or its variables changed since this run began; steps already done are kept, the rest run with the new values (`upshift abort` starts over)"})
		}
		return true, prev, nil
	}
	run := &journal.Run{
		ID:       NewRunID(time.Now()),
		Playbook: x.g.Playbook.Dir,
		Cluster:  cluster,
		Digest:   x.opts.Digest,
		Steps:    map[string]*journal.Step{},
	}
	for _, inst := range x.g.Instances {
		run.Steps[inst.Addr] = &journal.Step{Address: inst.Addr, Status: journal.Pending, Action: inst.Step.Run.String(), Idempotent: inst.Step.Run.Action.Idempotent}
	}
	return false, run, nil // Run begins it, after the preflights
}

func (x *execution) doneCount() int {
	n := 0
	for _, inst := range x.g.Instances {
		if _, ok := x.restored(inst); ok {
			n++
		}
	}
	return n
}

// restored returns the result of an instance done in an earlier run.
func (x *execution) restored(inst *StepInstance) (cty.Value, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if v, ok := x.results[inst.Addr]; ok {
		return v, true
	}
	p := x.prior[inst.Addr]
	if p == nil || p.Status != journal.Done {
		return cty.NilVal, false
	}
	v := cty.NullVal(inst.Step.Run.Action.Result.ImpliedType())
	if len(p.ResultWire) > 0 && len(p.ResultType) > 0 {
		if rv, err := schema.ValueFromJSON(p.ResultWire, p.ResultType); err == nil {
			v = rv
		}
	}
	x.results[inst.Addr] = v
	return v, true
}

func (x *execution) result(inst *StepInstance) (cty.Value, bool) {
	x.mu.Lock()
	v, ok := x.results[inst.Addr]
	x.mu.Unlock()
	if ok {
		return v, true
	}
	return x.restored(inst)
}

func (x *execution) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	x.opts.Events.Emit(e)
}

// record writes a step's state to the journal, filling what is common,
// and makes it durable before returning.
func (x *execution) record(inst *StepInstance, s journal.Step) error {
	if x.opts.Journal == nil {
		return nil
	}
	return x.opts.Journal.Update(x.common(inst, s))
}

// recordLazily is record without waiting for the disk (journal.Record):
// the record is durable with the next synced one.
func (x *execution) recordLazily(inst *StepInstance, s journal.Step) error {
	if x.opts.Journal == nil {
		return nil
	}
	return x.opts.Journal.Record(x.common(inst, s))
}

func (x *execution) common(inst *StepInstance, s journal.Step) journal.Step {
	s.Address = inst.Addr
	s.Action = inst.Step.Run.String()
	s.Idempotent = inst.Step.Run.Action.Idempotent
	info := x.opts.Plugins[inst.Step.Run.Resource.Address()]
	s.Plugin, s.Checksum = info.Name, info.Checksum
	return s
}

// pauseRequested reports whether a failed rollout asked to pause.
func (x *execution) pauseRequested(failed []string) bool {
	for _, addr := range failed {
		if inst, ok := x.g.DAG.Vertex(addr).(*StepInstance); ok && inst.Step.Rollout != nil && inst.Step.Rollout.OnFailure == playbooks.OnFailurePause {
			return true
		}
	}
	for name := range x.trips() {
		if r := x.g.Playbook.Rollout(name); r != nil && r.OnFailure == playbooks.OnFailurePause {
			return true
		}
	}
	return false
}
