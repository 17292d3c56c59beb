// The point of no return: the step a playbook marks point_of_no_return
// (the processing node's start, in the shipped playbook) is where the old
// state stops being the truth. A run that fails or is stopped before any
// instance of it has started is returned to where it began: every step
// whose effect is in place is undone, newest first, so the cluster is on
// its old version, writable and in rotation, and the next `upshift run`
// begins those steps again. After it, nothing is undone beyond what a
// rollout's own on_failure says, and the run says where each item stands.

package runner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
)

// ReturnReport says what a return to the start undid and what it had to
// leave.
type ReturnReport struct {
	// Undone lists the instances whose effect was undone (or, for steps
	// without an undo whose effect is harmless, such as a backup, that
	// will run again).
	Undone []string
	// Kept lists the instances whose effect stays, each with why.
	Kept []string
	// Failed lists the undos that failed, each with the error.
	Failed []string
}

// OK reports whether everything was undone.
func (r *ReturnReport) OK() bool { return len(r.Kept) == 0 && len(r.Failed) == 0 }

// passPointOfNoReturn notes that inst, an instance of the step marked
// point_of_no_return, is about to run.
func (x *execution) passPointOfNoReturn(inst *StepInstance) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ponrAt == "" {
		x.ponrAt = inst.Addr
	}
}

// PointOfNoReturnPassed says whether a run (this one, or the interrupted
// one it resumes) has started an instance of the step marked
// point_of_no_return, and which one; false when the playbook marks none.
func (x *execution) pointOfNoReturnPassed() (string, bool) {
	s := x.g.Playbook.PointOfNoReturn()
	if s == nil {
		return "", false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ponrAt != "" {
		return x.ponrAt, true
	}
	for _, inst := range x.g.ByStep[s.Name] {
		if p := x.prior[inst.Addr]; p != nil {
			switch p.Status {
			case journal.Running, journal.Done, journal.Failed:
				return inst.Addr, true
			}
		}
	}
	return "", false
}

// beforePointOfNoReturn: the playbook marks one and no instance of it has
// started.
func (x *execution) beforePointOfNoReturn() bool {
	if x.g.Playbook.PointOfNoReturn() == nil {
		return false
	}
	_, passed := x.pointOfNoReturnPassed()
	return !passed
}

// ended is when inst finished: in this run, or in the journal of the run
// it resumes.
func (x *execution) endedAt(inst *StepInstance) time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t, ok := x.ended[inst.Addr]; ok {
		return t
	}
	if p := x.prior[inst.Addr]; p != nil {
		return p.EndedAt
	}
	return time.Time{}
}

// returnToStart undoes every instance whose effect is in place, newest
// first. Within a rollout item, a step that cannot be undone (an exec
// without undo) stops the undoing of that item: what came before it is
// left as it is (a drained, stopped node stays out of rotation, which is
// safe), and said. Cluster-wide steps are undone whatever happened to an
// item, so the read-only mode the run put on is always released.
func (x *execution) returnToStart(ctx context.Context, outcomes map[string]*dag.Outcome) *ReturnReport {
	rep := &ReturnReport{}
	var done []*StepInstance
	for _, inst := range x.g.Instances {
		if o := outcomes[inst.Addr]; o != nil && o.State == dag.Done {
			done = append(done, inst)
		}
	}
	sort.SliceStable(done, func(i, j int) bool {
		ti, tj := x.endedAt(done[i]), x.endedAt(done[j])
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return done[i].Seq > done[j].Seq
	})
	x.emit(Event{Type: RollbackStart, Message: fmt.Sprintf("returning the cluster to where it began: undoing %d steps, newest first", len(done))})
	broken := map[string]string{} // rollout item -> why it is left
	for _, inst := range done {
		s := inst.Step
		item := ""
		if s.Rollout != nil {
			item = s.Rollout.Name + "/" + inst.Key
			if why, ok := broken[item]; ok {
				rep.Kept = append(rep.Kept, fmt.Sprintf("%s (%s)", inst.Addr, why))
				x.keep(inst, why)
				continue
			}
		}
		if x.skippedByWhen(inst) {
			continue // nothing ran, nothing to undo
		}
		if s.Run.Action.Undo == "" {
			if s.Run.Action.Idempotent {
				// A backup, a health wait: nothing to take back, but it
				// describes a cluster that has moved on, so it runs again.
				_ = x.record(inst, journal.Step{Status: journal.RolledBack, Note: "returned to the start: nothing to undo; runs again"})
				rep.Undone = append(rep.Undone, inst.Addr)
				continue
			}
			why := fmt.Sprintf("%s has no undo", s.Run)
			rep.Kept = append(rep.Kept, fmt.Sprintf("%s (%s: its effect stays)", inst.Addr, why))
			x.keep(inst, why)
			if item != "" {
				broken[item] = "not undone: " + inst.Addr + ", later in its item, could not be"
			}
			continue
		}
		if err := x.undo(ctx, inst); err != nil {
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %s", inst.Addr, err))
			if item != "" {
				broken[item] = "not undone: the undo of " + inst.Addr + ", later in its item, failed"
			}
			continue
		}
		rep.Undone = append(rep.Undone, inst.Addr)
	}
	return rep
}

// keep journals a step whose effect a return to the start had to leave.
// It runs again on resume all the same: what it built on (a copy of A,
// say) is made again, since A took writes once read-only was released,
// and a step kept as done would build on what is gone.
func (x *execution) keep(inst *StepInstance, why string) {
	_ = x.record(inst, journal.Step{Status: journal.RolledBack, Note: "returned to the start, but not undone (" + why + "): its effect stays; runs again on resume"})
}

// Summary describes a return to the start for the operator.
func (r *ReturnReport) Summary() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "the cluster was returned to where it began (%d steps undone)", len(r.Undone))
		return b.String()
	}
	fmt.Fprintf(&b, "the cluster was returned to where it began only in part (%d steps undone)", len(r.Undone))
	for _, f := range r.Failed {
		fmt.Fprintf(&b, "\n  undo failed: %s", f)
	}
	for _, k := range r.Kept {
		fmt.Fprintf(&b, "\n  left as it is: %s", k)
	}
	return b.String()
}

// standing says where each rollout item stands, from this run's outcomes
// and the journal of the run it resumes.
func (x *execution) standing(outcomes map[string]*dag.Outcome) []string {
	return Standing(x.g, func(addr string) journal.Status {
		if o := outcomes[addr]; o != nil && o.State == dag.Failed {
			return journal.Failed
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		if _, ok := x.results[addr]; ok {
			return journal.Done
		}
		if p := x.prior[addr]; p != nil {
			return p.Status
		}
		return journal.Pending
	})
}

// Standing says, for a run past its point of no return that failed or
// stopped, where each rollout item stands: done (every step done), where
// it stopped, or not started, and which cluster-wide steps with an undo
// are still in effect on it (read-only mode, say): the operator reads
// which nodes serve on the new version and which still run the old one
// under the modes the run put them in. status gives each instance's state
// in the journal.
func Standing(g *Graph, status func(addr string) journal.Status) []string {
	// Cluster-wide keyed steps whose effect lasts (they have an undo), by
	// key: what stays in effect on an item not yet done.
	lasting := map[string][]string{}
	for _, s := range g.Playbook.Steps {
		if s.Rollout != nil || s.Run.Action.Undo == "" {
			continue
		}
		for _, inst := range g.ByStep[s.Name] {
			if inst.Keyed && status(inst.Addr) == journal.Done {
				lasting[inst.Key] = append(lasting[inst.Key], s.Name)
			}
		}
	}
	var lines []string
	for _, r := range g.Playbook.Rollouts {
		var done, waiting []string
		for _, batch := range g.Items[r.Name] {
			for _, key := range batch {
				insts := g.itemInsts[r.Name][key]
				n := 0
				var at *StepInstance
				var atStatus journal.Status
				for _, inst := range insts {
					st := status(inst.Addr)
					if st == journal.Done {
						n++
						continue
					}
					if at == nil && st != journal.Pending && st != journal.Skipped {
						at, atStatus = inst, st
					}
				}
				switch {
				case n == len(insts):
					done = append(done, key)
				case at == nil && n == 0:
					waiting = append(waiting, key)
				default:
					line := fmt.Sprintf("%s: stopped in rollout %q after %d of %d steps", key, r.Name, n, len(insts))
					if at != nil {
						line += fmt.Sprintf(", at %s (%s)", at.Addr, atStatus)
					}
					if l := lasting[key]; len(l) > 0 {
						line += "; still in effect: " + strings.Join(l, ", ")
					}
					lines = append(lines, line)
				}
			}
		}
		if len(done) > 0 {
			lines = append(lines, fmt.Sprintf("%s: done (every step of rollout %q)", strings.Join(done, ", "), r.Name))
		}
		if len(waiting) > 0 {
			line := fmt.Sprintf("%s: not started in rollout %q", strings.Join(waiting, ", "), r.Name)
			var effects []string
			seen := map[string]bool{}
			for _, key := range waiting {
				for _, e := range lasting[key] {
					if !seen[e] {
						seen[e] = true
						effects = append(effects, e)
					}
				}
			}
			if len(effects) > 0 {
				line += "; still in effect on them: " + strings.Join(effects, ", ")
			}
			lines = append(lines, line)
		}
	}
	return lines
}
