// Rollback: after the walk, the failed items of an on_failure = "rollback"
// rollout are undone step by step, newest first, each undo journaled before
// it starts so that a resume knows the step's effect may be gone.

package runner

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

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
		failedKeys = x.guardedKeys(r, failedKeys, outcomes)
		for _, key := range failedKeys {
			x.emit(Event{Type: RollbackStart, Key: key, Message: fmt.Sprintf("rolling back item %q of rollout %q", key, r.Name)})
			reapplied := false
			reapply := func() {
				if !reapplied {
					reapplied = true
					x.reapplyLasting(ctx, key, outcomes)
				}
			}
			for i := len(r.Steps) - 1; i >= 0; i-- {
				s := r.Steps[i]
				inst := x.g.DAG.Vertex(InstanceAddr(s.Name, key, true)).(*StepInstance)
				if outcomes[inst.Addr].State != dag.Done || x.skippedByWhen(inst) || x.undoneEarly(inst) {
					continue // not run, or undone already: nothing to undo
				}
				if i == 0 {
					// Before the item's first step is undone (traffic
					// back, in a rollout that begins with drain), the
					// node is put back under the modes the run had it in.
					reapply()
				}
				if s.Run.Action.Undo == "" {
					if s.Run.Action.Idempotent {
						continue // a health wait: nothing to take back
					}
					// An exec without undo: what came before it must
					// stay, or the node would start on data it no
					// longer fits.
					x.emit(Event{Type: StepFailed, Address: inst.Addr + ".undo", Error: fmt.Sprintf("%s has no undo: its effect stays, and the steps before it in item %q are left as they are", s.Run, key)})
					break
				}
				if err := x.undo(ctx, inst); err != nil {
					break // undoing further back on a half-undone item would do more harm
				}
			}
			reapply()
		}
	}
}

// reapplyLasting runs again, for an item being rolled back, the
// cluster-wide steps of the same key whose effect is meant to last while
// the item waits (those with an undo, such as read_only): undoing the
// item's stop starts the node afresh, without the modes the run had put it
// in, and an old-version node taking writes on the old database would
// lose them. Each is idempotent (it has an undo), so running it again is
// safe.
func (x *execution) reapplyLasting(ctx context.Context, key string, outcomes map[string]*dag.Outcome) {
	for _, s := range x.g.Playbook.Steps {
		if s.Rollout != nil || s.ForEach == nil || s.Run.Action.Undo == "" {
			continue
		}
		inst, ok := x.g.DAG.Vertex(InstanceAddr(s.Name, key, true)).(*StepInstance)
		if !ok || outcomes[inst.Addr] == nil || outcomes[inst.Addr].State != dag.Done || x.skippedByWhen(inst) {
			continue
		}
		x.emit(Event{Type: RollbackStart, Address: inst.Addr, Key: key, Message: fmt.Sprintf("applying %s again to item %q, as the run had it before the item began", inst.Addr, key)})
		_ = x.runInstance(ctx, inst) // journaled and reported as any run of it
	}
}

// undo runs the undo action of inst, a done instance, with the arguments
// the undo takes from the step's own arguments and result, journaling it
// before and after.
func (x *execution) undo(ctx context.Context, inst *StepInstance) error {
	s := inst.Step
	undo := s.Run.Resource.Schema.Action(s.Run.Action.Undo)
	addr := inst.Addr + ".undo"
	if undo == nil {
		err := fmt.Errorf("its plugin has no action %q", s.Run.Action.Undo)
		x.emit(Event{Type: StepFailed, Address: addr, Error: err.Error()})
		return err
	}
	undoName := s.Run.Resource.Address() + "." + undo.Name
	args, diags := x.g.DecodeArgs(inst, x.result)
	if diags.HasErrors() {
		err := diagsError(diags)
		x.emit(Event{Type: StepFailed, Address: addr, Action: undoName, Error: err.Error()})
		return err
	}
	shown := redactedJSON(args, s.Run.Action.Args)
	args, _ = args.UnmarkDeep()
	res, _ := x.result(inst)
	res, _ = res.UnmarkDeep()
	undoArgs, err := fitArgs(args, res, undo)
	if err != nil {
		x.emit(Event{Type: StepFailed, Address: addr, Action: undoName, Error: err.Error()})
		return err
	}
	// The journal hears of the undo before it starts: once it has begun,
	// the step's effect may be gone, so a resume must run the step again
	// rather than trust its done record (every action with an undo is
	// idempotent, so running it again is safe whether or not the undo got
	// through).
	started := time.Now()
	if err := x.record(inst, journal.Step{Status: journal.RolledBack, Args: shown, Note: "rollback: " + undoName + " started", StartedAt: started}); err != nil {
		err = fmt.Errorf("not rolled back: recording the rollback failed: %w", err)
		x.emit(Event{Type: StepFailed, Address: addr, Action: undoName, Error: err.Error()})
		return err
	}
	x.emit(Event{Type: StepStarted, Address: addr, Action: undoName})
	resp := x.opts.Providers[s.Run.Resource.Address()].Invoke(ctx, plugins.InvokeRequest{Action: undo.Name, Args: undoArgs})
	if resp.Diagnostics.HasErrors() {
		err := diagsError(resp.Diagnostics.HCL(nil)) // its arguments are not the step's `with`
		_ = x.record(inst, journal.Step{Status: journal.Failed, Args: shown, Error: fmt.Sprintf("its undo %s failed during rollback: %s; the step runs again on resume", undoName, err), StartedAt: started, EndedAt: time.Now()})
		x.emit(Event{Type: StepFailed, Address: addr, Error: err.Error(), Duration: time.Since(started)})
		return err
	}
	_ = x.record(inst, journal.Step{Status: journal.RolledBack, Args: shown, Note: "undone by " + undoName, StartedAt: started, EndedAt: time.Now()})
	x.emit(Event{Type: StepFinished, Address: addr, Duration: time.Since(started)})
	return nil
}

// skippedByWhen: a step whose when was false did nothing, so has nothing to undo.
func (x *execution) skippedByWhen(inst *StepInstance) bool {
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

// guardedKeys adjusts the items to roll back when r's traffic guard
// tripped: the item it blames comes first, even if all its steps finished;
// the items it refused before they did anything have nothing to undo.
func (x *execution) guardedKeys(r *playbooks.Rollout, keys []string, outcomes map[string]*dag.Outcome) []string {
	g := x.guards[r.Name]
	if g == nil {
		return keys
	}
	trip := x.trips()[r.Name]
	var out []string
	if trip != nil && trip.Blamed != "" {
		out = append(out, trip.Blamed)
	}
	seen := map[string]bool{}
	for _, k := range out {
		seen[k] = true
	}
	for _, k := range keys {
		if !seen[k] && !g.untouched(k, outcomes) {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
