package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

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
	// Again begins a new run even when the journal's last run of the same
	// playbook and variables finished: by default that run is not repeated.
	Again bool
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
	// AlreadyDone is true when nothing ran because the same playbook with
	// the same variables had already run to completion.
	AlreadyDone bool
}

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
	x := &execution{g: g, opts: opts, start: time.Now(), results: map[string]cty.Value{}, prior: map[string]*journal.Step{}, rerun: map[string]bool{}, whenSkipped: map[string]bool{}}
	for _, a := range opts.Rerun {
		x.rerun[a] = true
	}
	resumed, err := x.openJournal()
	if errors.Is(err, errAlreadyDone) {
		x.emit(Event{Type: RunFinished, Status: string(journal.Done), Message: "nothing to do: this playbook already ran to completion with these variables (run it again with --again)"})
		return &Result{Status: journal.Done, AlreadyDone: true, Outcomes: map[string]*dag.Outcome{}}, nil
	}
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("running %d steps", len(g.Instances))
	if resumed {
		msg = fmt.Sprintf("resuming an interrupted run: %d of %d steps already done", x.doneCount(), len(g.Instances))
	}
	x.emit(Event{Type: RunStarted, Message: msg})

	outcomes, werr := g.DAG.Walk(ctx, dag.WalkOptions{
		Parallelism: opts.Parallelism,
		Stop:        opts.Stop,
		RunAnyway: func(v dag.Vertex) bool {
			inst, ok := v.(*Instance)
			return ok && inst.Step.Always
		},
		Skip: func(v dag.Vertex) bool {
			inst, ok := v.(*Instance)
			if !ok {
				return false
			}
			if _, done := x.restored(inst); done {
				x.emit(Event{Type: StepRestored, Address: inst.Addr, Action: inst.Step.Run.String(), Key: inst.Key})
				return true
			}
			return false
		},
	}, x.runVertex)
	if werr != nil && !errors.Is(werr, dag.ErrStopped) {
		return nil, werr
	}

	res := &Result{Outcomes: outcomes, Resumed: resumed}
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

	if len(res.Failed) > 0 {
		x.rollback(ctx, outcomes)
	}
	switch {
	case len(res.Failed) > 0 && x.pauseRequested(res.Failed):
		res.Status = journal.Paused
	case len(res.Failed) > 0:
		res.Status = journal.Failed
	case errors.Is(werr, dag.ErrStopped):
		res.Status = journal.Paused
	default:
		res.Status = journal.Done
	}
	if opts.Journal != nil {
		if err := opts.Journal.Finish(res.Status); err != nil {
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
	x.emit(Event{Type: RunFinished, Status: string(res.Status), Message: summary, Duration: time.Since(x.start)})
	if res.Status != journal.Done {
		return res, ErrRunFailed
	}
	return res, nil
}

func countState(out map[string]*dag.Outcome, s dag.State) int {
	n := 0
	for name, o := range out {
		if o.State == s && !strings.HasSuffix(name, "[*]") && !strings.HasPrefix(name, "rollout.") {
			n++
		}
	}
	return n
}

// errAlreadyDone: the journal's last run is this one, finished.
var errAlreadyDone = errors.New("already done")

// openJournal continues an unfinished run or begins a new one. It returns
// whether it resumed. A finished run of the same playbook and variables is
// not begun again unless asked: a runner killed just after finishing must
// not upgrade the cluster twice when it is started again.
func (x *execution) openJournal() (bool, error) {
	j := x.opts.Journal
	if j == nil {
		return false, nil
	}
	prev, err := j.Load()
	if err != nil {
		return false, err
	}
	if prev != nil && prev.Status == journal.Done && prev.Digest == x.opts.Digest && !x.opts.Again {
		return false, errAlreadyDone
	}
	if prev != nil && prev.Status != journal.Done && prev.Status != journal.Aborted {
		for addr, s := range prev.Steps {
			x.prior[addr] = s
		}
		if prev.Digest != "" && x.opts.Digest != "" && prev.Digest != x.opts.Digest {
			// Fixing the cause of a failure often means changing a
			// variable: the run resumes, with the new values, and says so.
			x.emit(Event{Type: RunStarted, Message: "note: the playbook or its variables changed since this run began; steps already done are kept, the rest run with the new values (`upshift abort` starts over)"})
		}
		return true, nil
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	run := &journal.Run{
		ID:       time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id),
		Playbook: x.g.Playbook.Dir,
		Digest:   x.opts.Digest,
		Steps:    map[string]*journal.Step{},
	}
	for _, inst := range x.g.Instances {
		run.Steps[inst.Addr] = &journal.Step{Address: inst.Addr, Status: journal.Pending, Action: inst.Step.Run.String(), Idempotent: inst.Step.Run.Action.Idempotent}
	}
	return false, j.Begin(run)
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
func (x *execution) restored(inst *Instance) (cty.Value, bool) {
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

func (x *execution) result(inst *Instance) (cty.Value, bool) {
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

// record writes a step's state to the journal, filling what is common.
func (x *execution) record(inst *Instance, s journal.Step) error {
	if x.opts.Journal == nil {
		return nil
	}
	s.Address = inst.Addr
	s.Action = inst.Step.Run.String()
	s.Idempotent = inst.Step.Run.Action.Idempotent
	info := x.opts.Plugins[inst.Step.Run.Resource.Address()]
	s.Plugin, s.Checksum = info.Name, info.Checksum
	return x.opts.Journal.Update(s)
}

// runVertex runs one vertex of the walk: a join is a no-op.
func (x *execution) runVertex(ctx context.Context, v dag.Vertex) error {
	inst, ok := v.(*Instance)
	if !ok {
		return nil
	}
	return x.runInstance(ctx, inst)
}

func (x *execution) runInstance(ctx context.Context, inst *Instance) error {
	s := inst.Step
	action := s.Run.Action
	started := time.Now()
	ev := Event{Address: inst.Addr, Action: s.Run.String(), Key: inst.Key}
	fail := func(err error, attempts int, args json.RawMessage) error {
		if jerr := x.record(inst, journal.Step{Status: journal.Failed, Error: err.Error(), Attempts: attempts, Args: args, StartedAt: started, EndedAt: time.Now()}); jerr != nil {
			err = fmt.Errorf("%w (and recording the failure failed: %v)", err, jerr)
		}
		e := ev
		e.Type, e.Error, e.Duration = StepFailed, err.Error(), time.Since(started)
		x.emit(e)
		return err
	}

	when, diags := x.g.EvalWhen(inst, x.result)
	if diags.HasErrors() {
		return fail(diagsError(diags), 0, nil)
	}
	if when.IsKnown() && when.False() {
		res := cty.NullVal(action.Result.ImpliedType())
		x.setResult(inst, res)
		x.mu.Lock()
		x.whenSkipped[inst.Addr] = true
		x.mu.Unlock()
		if err := x.record(inst, journal.Step{Status: journal.Done, StartedAt: started, EndedAt: time.Now(), Result: json.RawMessage(`null`)}); err != nil {
			return fmt.Errorf("recording the step: %w", err)
		}
		e := ev
		e.Type, e.Message = StepSkipped, "when is false"
		x.emit(e)
		return nil
	}

	args, diags := x.g.DecodeArgs(inst, x.result)
	if diags.HasErrors() {
		err := diagsError(diags)
		if skipped := x.skippedRefs(inst); len(skipped) > 0 {
			err = fmt.Errorf("%w (%s did not run, its when being false, so its result is null; a step that may be skipped is read with a guard, such as step.NAME.result == null ? \"default\" : step.NAME.result.ATTR)", err, strings.Join(skipped, ", "))
		}
		return fail(err, 0, nil)
	}
	wireArgs, _ := args.UnmarkDeep()
	shownArgs := redactedJSON(args, action.Args)
	provider := x.opts.Providers[s.Run.Resource.Address()]
	if provider == nil {
		return fail(fmt.Errorf("no plugin instance for %s", s.Run.Resource.Address()), 0, shownArgs)
	}

	// A step found in flight from an interrupted run.
	if p := x.prior[inst.Addr]; p != nil && p.Status == journal.Running && !action.Idempotent && !x.rerun[inst.Addr] {
		chk := provider.Check(ctx, plugins.InvokeRequest{Action: action.Name, Args: wireArgs})
		switch {
		case chk.State == plugins.CheckApplied:
			res, err := conformResult(chk.Result, action)
			if err == nil {
				return x.finish(inst, res, started, p.Attempts, shownArgs, "checked: already applied")
			}
		case chk.State == plugins.CheckNotApplied:
			// Safe to run.
		default:
			return fail(fmt.Errorf("%s was in flight when the previous run stopped, its action %s is not idempotent, and its plugin cannot tell whether it took effect (%s). Check the system, then run again with --rerun '%s' to run it again", inst.Addr, s.Run, orUnknown(chk.Detail), inst.Addr), p.Attempts, shownArgs)
		}
	}

	retry := s.Retry
	if retry.Attempts < 1 {
		retry.Attempts = 1
	}
	delay := retry.Delay
	var lastErr error
	for attempt := 1; attempt <= retry.Attempts; attempt++ {
		// Non-idempotent steps are recorded durably as running before the
		// call, so a crash is noticed on resume; idempotent ones can rerun
		// anyway, so a cheaper unsynced record is enough.
		running := journal.Step{Status: journal.Running, Attempts: attempt, Args: shownArgs, StartedAt: started}
		if x.opts.Journal != nil {
			running.Address, running.Action, running.Idempotent = inst.Addr, s.Run.String(), action.Idempotent
			info := x.opts.Plugins[s.Run.Resource.Address()]
			running.Plugin, running.Checksum = info.Name, info.Checksum
			var err error
			if action.Idempotent {
				err = x.opts.Journal.Record(running)
			} else {
				err = x.opts.Journal.Update(running)
			}
			if err != nil {
				return fail(fmt.Errorf("recording the step before running it: %w", err), attempt, shownArgs)
			}
		}
		if attempt == 1 {
			e := ev
			e.Type = StepStarted
			x.emit(e)
		}
		res, err := x.invoke(ctx, inst, provider, wireArgs, attempt)
		if err == nil {
			return x.finish(inst, res, started, attempt, shownArgs, "")
		}
		lastErr = err
		if ctx.Err() != nil || attempt == retry.Attempts {
			break
		}
		e := ev
		e.Type, e.Attempt, e.Error, e.Message = StepRetrying, attempt, err.Error(), fmt.Sprintf("retrying in %s", delay)
		x.emit(e)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = nextDelay(delay, retry)
	}
	if retry.Attempts > 1 {
		lastErr = fmt.Errorf("%w (after %d attempts)", lastErr, retry.Attempts)
	}
	return fail(lastErr, retry.Attempts, shownArgs)
}

func orUnknown(s string) string {
	if s == "" {
		return "no check available"
	}
	return s
}

func nextDelay(d time.Duration, r playbooks.Retry) time.Duration {
	if r.Backoff > 1 {
		d = time.Duration(math.Min(float64(d)*r.Backoff, float64(math.MaxInt64/2)))
	}
	if r.MaxDelay > 0 && d > r.MaxDelay {
		d = r.MaxDelay
	}
	return d
}

// invoke calls the action once, under the step's timeout.
func (x *execution) invoke(ctx context.Context, inst *Instance, p plugins.Provider, args cty.Value, attempt int) (cty.Value, error) {
	s := inst.Step
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	resp := p.Invoke(ctx, plugins.InvokeRequest{
		Action: s.Run.Action.Name,
		Args:   args,
		Progress: func(line string) {
			x.emit(Event{Type: StepProgress, Address: inst.Addr, Action: s.Run.String(), Key: inst.Key, Attempt: attempt, Message: line})
		},
	})
	if err := resp.Diagnostics.Err(); err != nil {
		if s.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return cty.NilVal, fmt.Errorf("timed out after %s: %w", s.Timeout, err)
		}
		return cty.NilVal, x.blame(inst, resp.Diagnostics)
	}
	return conformResult(resp.Result, s.Run.Action)
}

// blame turns plugin diagnostics into an error that names the playbook line
// of the argument at fault, when the plugin named one.
func (x *execution) blame(inst *Instance, diags plugins.Diagnostics) error {
	var parts []string
	for _, d := range diags {
		if d.Severity != plugins.Error {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Attribute != "" {
			where := ""
			if inst.Step.With != nil {
				if attrs, _ := inst.Step.With.JustAttributes(); attrs[d.Attribute] != nil {
					where = " (" + playbooks.At(attrs[d.Attribute].Range) + ")"
				}
			}
			msg = fmt.Sprintf("argument %q%s: %s", d.Attribute, where, msg)
		}
		parts = append(parts, msg)
	}
	return errors.New(strings.Join(parts, "; "))
}

// conformResult checks a result against the action's result schema.
func conformResult(v cty.Value, a *schema.Action) (cty.Value, error) {
	want := a.Result.ImpliedType()
	if v == cty.NilVal || v.IsNull() {
		return cty.NullVal(want), nil
	}
	conv, err := convert.Convert(v, want)
	if err != nil {
		return cty.NilVal, fmt.Errorf("the plugin returned a result that does not fit action %s: %s", a.Name, err)
	}
	return conv, nil
}

func (x *execution) setResult(inst *Instance, v cty.Value) {
	x.mu.Lock()
	x.results[inst.Addr] = v
	x.mu.Unlock()
}

// finish records a step done. A journal that cannot record it fails the
// step: the run must not go on with a journal that does not say where
// things stand (on resume, the step is found running and re-checked).
func (x *execution) finish(inst *Instance, res cty.Value, started time.Time, attempts int, args json.RawMessage, note string) error {
	x.setResult(inst, res)
	shown := redactedJSON(res, inst.Step.Run.Action.Result)
	st := journal.Step{Status: journal.Done, Attempts: attempts, Args: args, Result: shown, StartedAt: started, EndedAt: time.Now()}
	if wire, typ, err := schema.ValueJSON(res); err == nil {
		st.ResultType = typ
		// The unredacted result is kept only where later steps may need a
		// secret from it (a copy's dsn); everything else is in Result.
		if inst.Step.Run.Action.Result.HasSensitive() {
			st.ResultWire = wire
		} else {
			st.ResultWire = shown
		}
	}
	if err := x.record(inst, st); err != nil {
		return fmt.Errorf("the action succeeded but recording it in the journal failed: %w", err)
	}
	x.emit(Event{Type: StepFinished, Address: inst.Addr, Action: inst.Step.Run.String(), Key: inst.Key, Attempt: attempts, Duration: time.Since(started), Message: note})
	return nil
}

// redactedJSON renders v for the journal with sensitive values hidden.
func redactedJSON(v cty.Value, o *schema.Object) json.RawMessage {
	if v == cty.NilVal {
		return nil
	}
	v = redactMarked(v)
	v = o.Redact(v)
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return json.RawMessage(fmt.Sprintf("%q", "(unrenderable: "+err.Error()+")"))
	}
	return b
}

// redactMarked replaces every value marked sensitive by "(sensitive)".
func redactMarked(v cty.Value) cty.Value {
	out, _ := cty.Transform(v, func(_ cty.Path, v cty.Value) (cty.Value, error) {
		if v.HasMark(playbooks.SensitiveMark) {
			return cty.StringVal(schema.Redacted), nil
		}
		return v, nil
	})
	// Types may now differ (a sensitive number became a string): render it
	// as it is, unmarked.
	out, _ = out.UnmarkDeep()
	return out
}

// skippedRefs names the instances inst refers to that finished without a
// result: skipped by their when (in this run or, restored, in an earlier
// one, where the journal holds a null result).
func (x *execution) skippedRefs(inst *Instance) []string {
	var out []string
	seen := map[string]bool{}
	for _, ref := range inst.Step.References {
		for _, t := range x.g.ByStep[ref.Name] {
			if t.Step.Rollout != nil && t.Step.Rollout == inst.Step.Rollout && t.Key != inst.Key {
				continue // only its own item's instance is in scope
			}
			if res, ok := x.result(t); ok && res.IsNull() && !seen[t.Addr] {
				seen[t.Addr] = true
				out = append(out, t.Addr)
			}
		}
	}
	return out
}

func diagsError(diags hcl.Diagnostics) error {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s: %s", playbooks.At(*d.Subject), msg)
		}
		parts = append(parts, msg)
	}
	return errors.New(strings.Join(parts, "; "))
}

// pauseRequested reports whether a failed rollout asked to pause.
func (x *execution) pauseRequested(failed []string) bool {
	for _, addr := range failed {
		if inst, ok := x.g.DAG.Vertex(addr).(*Instance); ok && inst.Step.Rollout != nil && inst.Step.Rollout.OnFailure == playbooks.OnFailurePause {
			return true
		}
	}
	return false
}

// rollback runs, for each failed item of a rollout with on_failure =
// "rollback", the undo action of each of its steps that completed, newest
// first, with the same arguments.
func (x *execution) rollback(ctx context.Context, outcomes map[string]*dag.Outcome) {
	for _, r := range x.g.Playbook.Rollouts {
		if r.OnFailure != playbooks.OnFailureRollback {
			continue
		}
		var failedKeys []string
		for _, s := range r.Steps {
			for _, inst := range x.g.ByStep[s.Name] {
				if outcomes[inst.Addr].State == dag.Failed {
					failedKeys = append(failedKeys, inst.Key)
				}
			}
		}
		sort.Strings(failedKeys)
		for _, key := range failedKeys {
			x.emit(Event{Type: RollbackStart, Key: key, Message: fmt.Sprintf("rolling back item %q of rollout %q", key, r.Name)})
			for i := len(r.Steps) - 1; i >= 0; i-- {
				s := r.Steps[i]
				inst := x.g.DAG.Vertex(InstanceAddr(s.Name, key, true)).(*Instance)
				if outcomes[inst.Addr].State != dag.Done || s.Run.Action.Undo == "" || x.skippedByWhen(inst) {
					continue // not run, or nothing to undo
				}
				undo := s.Run.Resource.Schema.Action(s.Run.Action.Undo)
				if undo == nil {
					continue
				}
				args, diags := x.g.DecodeArgs(inst, x.result)
				if diags.HasErrors() {
					continue
				}
				args, _ = args.UnmarkDeep()
				res, _ := x.result(inst)
				undoArgs, err := fitArgs(args, res, undo)
				addr := inst.Addr + ".undo"
				undoName := s.Run.Resource.Address() + "." + undo.Name
				if err != nil {
					x.emit(Event{Type: StepFailed, Address: addr, Action: undo.Name, Error: err.Error()})
					continue
				}
				// The journal hears of the undo before it starts: once it
				// has begun, the step's effect may be gone, so a resume must
				// run the step again rather than trust its done record (every
				// action with an undo is idempotent, so running it again is
				// safe whether or not the undo got through).
				started := time.Now()
				shown := redactedJSON(args, s.Run.Action.Args)
				if err := x.record(inst, journal.Step{Status: journal.RolledBack, Args: shown, Note: "rollback: " + undoName + " started", StartedAt: started}); err != nil {
					x.emit(Event{Type: StepFailed, Address: addr, Action: undoName, Error: fmt.Sprintf("not rolled back: recording the rollback failed: %s", err)})
					break
				}
				x.emit(Event{Type: StepStarted, Address: addr, Action: undoName})
				resp := x.opts.Providers[s.Run.Resource.Address()].Invoke(ctx, plugins.InvokeRequest{Action: undo.Name, Args: undoArgs})
				if err := resp.Diagnostics.Err(); err != nil {
					_ = x.record(inst, journal.Step{Status: journal.Failed, Args: shown, Error: fmt.Sprintf("its undo %s failed during rollback: %s; the step runs again on resume", undoName, err), StartedAt: started, EndedAt: time.Now()})
					x.emit(Event{Type: StepFailed, Address: addr, Error: err.Error(), Duration: time.Since(started)})
					break // undoing further back on a half-undone item would do more harm
				}
				_ = x.record(inst, journal.Step{Status: journal.RolledBack, Args: shown, Note: "undone by " + undoName, StartedAt: started, EndedAt: time.Now()})
				x.emit(Event{Type: StepFinished, Address: addr, Duration: time.Since(started)})
			}
		}
	}
}

func (x *execution) skippedByWhen(inst *Instance) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.whenSkipped[inst.Addr]
}

// fitArgs builds the undo action's arguments: each from the step's
// argument of that name, else from its result (copy's `name` is what drop
// needs), else null.
func fitArgs(args, result cty.Value, a *schema.Action) (cty.Value, error) {
	want := a.Args.ImpliedType()
	attrs := map[string]cty.Value{}
	for name, ty := range want.AttributeTypes() { // attributes and blocks alike
		attrs[name] = cty.NullVal(ty)
		for _, from := range []cty.Value{args, result} {
			if from != cty.NilVal && !from.IsNull() && from.Type().IsObjectType() && from.Type().HasAttribute(name) && !from.GetAttr(name).IsNull() {
				attrs[name] = from.GetAttr(name)
				break
			}
		}
	}
	return convert.Convert(cty.ObjectVal(attrs), want)
}
