// One instance of a run: its when, its arguments decoded with the results
// so far, the plugin call under the step's timeout and retry policy, the
// result conformed to the schema, and every state change in the journal.

package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// runVertex runs one vertex of the walk: a join is a no-op.
func (x *execution) runVertex(ctx context.Context, v dag.Vertex) error {
	if x.heldVertex(v) {
		return nil
	}
	if gv, ok := v.(*GateVertex); ok {
		return x.runGate(ctx, gv)
	}
	inst, ok := v.(*StepInstance)
	if !ok {
		return nil
	}
	if g := x.guardOf(inst); g != nil {
		return x.guardedVertex(ctx, g, inst)
	}
	err := x.runInstance(ctx, inst)
	if err != nil {
		x.settled(inst, err) // what the walk skips for it will not run
	}
	return err
}

// runInstance runs one instance: its when, its arguments, a check when it
// was found in flight, then the call with retries; a failure is journaled
// and emitted before it is returned to the walk.
func (x *execution) runInstance(ctx context.Context, inst *StepInstance) error {
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
	sc := x.scrubberFor(inst, args)
	provider := x.opts.Providers[s.Run.Resource.Address()]
	if provider == nil {
		return fail(fmt.Errorf("no plugin instance for %s", s.Run.Resource.Address()), 0, shownArgs)
	}

	if s.PointOfNoReturn {
		x.passPointOfNoReturn(inst)
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
			return fail(fmt.Errorf("%s was in flight when the previous run stopped, its action %s is not idempotent, and its plugin cannot tell whether it took effect (%s). Check the system, then run again with --rerun '%s' to run it again", inst.Addr, s.Run, orUnknown(sc.scrub(chk.Detail)), inst.Addr), p.Attempts, shownArgs)
		}
	}
	// A non-idempotent step that failed may still have taken effect: its
	// plugin died after the work was done but before it answered, or the
	// answer was lost. Running it again would then fail for good (a
	// migration refuses data already migrated), so its plugin is asked
	// first; only a plain "applied" settles it, anything else runs it again
	// as any failed step is.
	if p := x.prior[inst.Addr]; p != nil && p.Status == journal.Failed && !action.Idempotent && !x.rerun[inst.Addr] {
		if chk := provider.Check(ctx, plugins.InvokeRequest{Action: action.Name, Args: wireArgs}); chk.State == plugins.CheckApplied {
			if res, err := conformResult(chk.Result, action); err == nil {
				return x.finish(inst, res, started, p.Attempts, shownArgs, "checked: it had taken effect although it failed")
			}
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
		res, err := x.invoke(ctx, inst, provider, wireArgs, attempt, sc)
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
func (x *execution) invoke(ctx context.Context, inst *StepInstance, p plugins.Provider, args cty.Value, attempt int, sc scrubber) (cty.Value, error) {
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
			x.emit(Event{Type: StepProgress, Address: inst.Addr, Action: s.Run.String(), Key: inst.Key, Attempt: attempt, Message: sc.scrub(line)})
		},
	})
	if resp.Diagnostics.HasErrors() {
		// An argument the plugin blames is named with its line in the playbook.
		err := diagsError(resp.Diagnostics.HCL(s.With))
		if scrubbed := sc.scrub(err.Error()); scrubbed != err.Error() {
			err = errors.New(scrubbed)
		}
		if s.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", s.Timeout, err)
		}
		return cty.NilVal, err
	}
	return conformResult(resp.Result, s.Run.Action)
}

// conformResult checks a result against the action's result schema with
// schema.Conform, the one check of a value against a schema (the SDK runs
// it in the plugin too; a provider that is not an SDK plugin is checked
// here). A null result stands for an action that returned none.
func conformResult(v cty.Value, a *schema.Action) (cty.Value, error) {
	if v == cty.NilVal || v.IsNull() {
		return cty.NullVal(a.Result.ImpliedType()), nil
	}
	conv, probs := schema.Conform(a.Result, v, true)
	if len(probs) > 0 {
		return cty.NilVal, fmt.Errorf("the plugin returned a result that does not fit action %s: %s", a.Name, probs.Error())
	}
	return conv, nil
}

func (x *execution) setResult(inst *StepInstance, v cty.Value) {
	x.mu.Lock()
	x.results[inst.Addr] = v
	x.mu.Unlock()
}

// finish records a step done. A journal that cannot record it fails the
// step: the run must not go on with a journal that does not say where
// things stand (on resume, the step is found running and re-checked).
func (x *execution) finish(inst *StepInstance, res cty.Value, started time.Time, attempts int, args json.RawMessage, note string) error {
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
	x.mu.Lock()
	x.ended[inst.Addr] = st.EndedAt
	x.mu.Unlock()
	// An idempotent step's end needs no fdatasync of its own: lost in a
	// crash, the step runs again on resume, which it may. The log keeps
	// order, so the next synced record (a non-idempotent step's start, a
	// failure, the run's end) makes it durable before anything that could
	// not be repeated happens.
	var err error
	if inst.Step.Run.Action.Idempotent {
		err = x.recordLazily(inst, st)
	} else {
		err = x.record(inst, st)
	}
	if err != nil {
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
func (x *execution) skippedRefs(inst *StepInstance) []string {
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
