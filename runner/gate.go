// Gates: vertices of the graph between a rollout's batches (or before one
// of its items) where the run waits, for an operator or for a bake time,
// and holding: a run that must go no further (a gate waits for an
// operator, or --target's item is done) starts nothing more and ends
// paused, without undoing anything. A gate is journaled as an ordinary step
// record, running while it waits and done once approved or baked.

package runner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
)

// GateAction is the action a gate's journal record and events name.
const GateAction = "gate"

// GateVertex is a gate in the graph, e.g. gate.upgrade["after batch 1"].
type GateVertex struct {
	Addr    string
	Rollout *playbooks.Rollout
	Gate    *playbooks.Gate
	// Batch is the batch the gate comes before (1-based).
	Batch int
}

// Name makes GateVertex a dag.Vertex.
func (g *GateVertex) Name() string { return g.Addr }

// GateAddr renders a gate's address.
func GateAddr(rollout, name string) string {
	return "gate." + rollout + "[" + strconv.Quote(name) + "]"
}

// Describe says what the gate waits for, for plans and messages.
func (g *GateVertex) Describe() string {
	if g.Gate.Approval() {
		return fmt.Sprintf("%s: waits for an operator (upshift run again, or upshift approve)", g.Gate.Where())
	}
	return fmt.Sprintf("%s: bakes %s before going on", g.Gate.Where(), g.Gate.Bake)
}

// gateTransform puts each rollout's gates between the batches (or before
// the items) they stand at. Gates at one place run in the order listed.
type gateTransform struct{}

func (gateTransform) Name() string { return "gates" }

func (gateTransform) Transform(b *graphBuild) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, r := range b.Playbook.Rollouts {
		batches := b.Items[r.Name]
		batchOf := map[string]int{}
		var keys []string
		for bi, batch := range batches {
			for _, k := range batch {
				batchOf[k] = bi + 1
				keys = append(keys, k)
			}
		}
		last := map[string]string{} // place -> the gate there so far
		for _, spec := range r.GatesFor(len(batches)) {
			gv := &GateVertex{Addr: GateAddr(r.Name, spec.Name), Rollout: r, Gate: spec}
			var deps, dependents []string
			place := ""
			switch {
			case spec.Before != "":
				bn, ok := batchOf[spec.Before]
				if !ok {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Gate before an unknown item", Detail: fmt.Sprintf("Gate %q stands before item %q, which is not an item of rollout %q%s.", spec.Name, spec.Before, r.Name, playbooks.Suggest(spec.Before, keys)), Subject: spec.DeclRange.Ptr()})
					continue
				}
				first := b.itemInsts[r.Name][spec.Before][0].Addr
				deps = b.DAG.Dependencies(first)
				dependents = []string{first}
				gv.Batch, place = bn, "before "+spec.Before
			default:
				if spec.AfterBatch >= len(batches) {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Gate after the last batch", Detail: fmt.Sprintf("Gate %q stands after batch %d, but rollout %q has %d %s: a gate stands between batches.", spec.Name, spec.AfterBatch, r.Name, len(batches), plural(len(batches), "batch", "batches")), Subject: spec.DeclRange.Ptr()})
					continue
				}
				for _, k := range batches[spec.AfterBatch-1] {
					deps = append(deps, b.lastOf(r.Name, k).Addr)
				}
				for _, k := range batches[spec.AfterBatch] {
					dependents = append(dependents, b.itemInsts[r.Name][k][0].Addr)
				}
				gv.Batch, place = spec.AfterBatch+1, "after "+strconv.Itoa(spec.AfterBatch)
			}
			if b.DAG.Vertex(gv.Addr) != nil {
				continue // reported by the playbook's decoding (duplicate gate)
			}
			b.DAG.Add(gv)
			for _, d := range deps {
				b.DAG.Connect(gv.Addr, d)
			}
			if prev, ok := last[place]; ok {
				b.DAG.Connect(gv.Addr, prev)
			}
			last[place] = gv.Addr
			for _, d := range dependents {
				b.DAG.Connect(d, gv.Addr)
			}
			b.Gates = append(b.Gates, gv)
		}
	}
	return diags
}

// gatesBefore lists the gates that stand before batch n of rollout r, in
// graph order.
func (g *Graph) gatesBefore(r *playbooks.Rollout, n int) []*GateVertex {
	var out []*GateVertex
	for _, gv := range g.Gates {
		if gv.Rollout == r && gv.Batch == n {
			out = append(out, gv)
		}
	}
	return out
}

// Hold is why a run stopped short: at a gate waiting for an operator, or
// past --target's item.
type Hold struct {
	// Gate is the gate the run waits at; nil when Target ended it.
	Gate *GateVertex
	// Target is the item --target named, when the run held after it.
	Target string
}

// String says where the run holds, in a sentence's middle.
func (h *Hold) String() string {
	if h.Gate != nil {
		return fmt.Sprintf("at %s (%s)", h.Gate.Addr, h.Gate.Gate.Where())
	}
	return fmt.Sprintf("after item %q (--target)", h.Target)
}

// holding is an execution's state of gates and holds.
type holding struct {
	stop    chan struct{} // the walk's Hold, closed by the first hold
	once    sync.Once
	mu      sync.Mutex
	held    map[string]bool // vertices that returned without running
	hold    *Hold
	allowed map[string]bool // with a target: what may run; nil without
}

// startHolding prepares the walk's stop channel and, with a target, what
// may run: the target item's steps and what they wait for.
func (x *execution) startHolding() error {
	h := &holding{stop: make(chan struct{}), held: map[string]bool{}}
	x.holds = h
	if x.opts.Target == "" {
		return nil
	}
	var last *StepInstance
	var names []string
	for _, r := range x.g.Playbook.Rollouts {
		for _, batch := range x.g.Items[r.Name] {
			names = append(names, batch...)
		}
		if insts := x.g.itemInsts[r.Name][x.opts.Target]; len(insts) > 0 {
			last = insts[len(insts)-1]
		}
	}
	if last == nil {
		sort.Strings(names)
		return fmt.Errorf("--target %q is not an item of any rollout of the playbook%s", x.opts.Target, playbooks.Suggest(x.opts.Target, names))
	}
	h.allowed = map[string]bool{last.Addr: true}
	for queue := []string{last.Addr}; len(queue) > 0; queue = queue[1:] {
		for _, d := range x.g.DAG.Dependencies(queue[0]) {
			if !h.allowed[d] {
				h.allowed[d] = true
				queue = append(queue, d)
			}
		}
	}
	return nil
}

func (h *holding) close() { h.once.Do(func() { close(h.stop) }) }

// holdAt stops the walk from starting anything more, remembering why (the
// first reason wins), and marks v as held: it returns without running.
// It must be called before v's walk function returns, so that the walk
// sees the stop before it starts v's dependents.
func (h *holding) holdAt(v string, why *Hold) {
	h.mu.Lock()
	h.held[v] = true
	if h.hold == nil && why != nil {
		h.hold = why
	}
	h.mu.Unlock()
	h.close()
}

// heldVertex reports whether v may not run in this run (--target): it
// returns without running, and without stopping the walk, since what the
// target waits for may still be running beside it (an item of its batch);
// v's dependents are held in turn, none being what the target waits for.
func (x *execution) heldVertex(v dag.Vertex) bool {
	h := x.holds
	if h.allowed == nil || h.allowed[v.Name()] {
		return false
	}
	h.mu.Lock()
	h.held[v.Name()] = true
	if h.hold == nil {
		h.hold = &Hold{Target: x.opts.Target}
	}
	h.mu.Unlock()
	return true
}

// heldOutcomes marks the vertices that returned without running as not
// started, and reports why the run held; nil when it did not (or the
// operator stopped it too, which is a stop as before).
func (x *execution) heldOutcomes(outcomes map[string]*dag.Outcome) *Hold {
	h := x.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	for v := range h.held {
		if o := outcomes[v]; o != nil && o.State == dag.Done {
			o.State = dag.NotStarted
		}
	}
	select {
	case <-x.opts.Stop:
		return nil // the operator stopped the run too: a stop, as ever
	default:
	}
	return h.hold
}

// runGate passes a gate: at once when an earlier run passed it; after the
// bake time for a bake gate; for an approval gate, when the operator
// continued a run that waited there (this run found it waiting: running
// `upshift run` again, or `upshift approve`, is the approval), otherwise
// the run holds there.
func (x *execution) runGate(ctx context.Context, gv *GateVertex) error {
	prior := x.prior[gv.Addr]
	if prior != nil && prior.Status == journal.Done {
		x.emit(Event{Type: StepRestored, Address: gv.Addr, Action: GateAction})
		return nil
	}
	started := time.Now()
	rec := func(s journal.Step) error {
		if x.opts.Journal == nil {
			return nil
		}
		s.Address, s.Action, s.Idempotent = gv.Addr, GateAction, true
		return x.opts.Journal.Update(s)
	}
	if gv.Gate.Approval() {
		if prior != nil && prior.Status == journal.Running {
			who := x.opts.Approver
			if who == "" {
				who = "the operator"
			}
			note := "approved by " + who
			if err := rec(journal.Step{Status: journal.Done, Note: note, StartedAt: prior.StartedAt, EndedAt: started}); err != nil {
				return fmt.Errorf("recording the approval of %s: %w", gv.Addr, err)
			}
			x.emit(Event{Type: StepFinished, Address: gv.Addr, Action: GateAction, Message: note, Duration: started.Sub(prior.StartedAt)})
			return nil
		}
		if err := rec(journal.Step{Status: journal.Running, Note: "waiting for an operator", StartedAt: started}); err != nil {
			return fmt.Errorf("recording %s: %w", gv.Addr, err)
		}
		x.emit(Event{Type: StepStarted, Address: gv.Addr, Action: GateAction, Message: "waiting for an operator: " + gv.Gate.Where()})
		x.holds.holdAt(gv.Addr, &Hold{Gate: gv})
		return nil
	}
	if err := rec(journal.Step{Status: journal.Running, Note: "baking " + gv.Gate.Bake.String(), StartedAt: started}); err != nil {
		return fmt.Errorf("recording %s: %w", gv.Addr, err)
	}
	x.emit(Event{Type: StepStarted, Address: gv.Addr, Action: GateAction, Message: fmt.Sprintf("baking %s (%s)", gv.Gate.Bake, gv.Gate.Where())})
	t := time.NewTimer(gv.Gate.Bake)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-x.opts.Stop:
		x.holds.holdAt(gv.Addr, nil)
		return nil
	case <-x.holds.stop:
		// Stopped while baking: the bake is begun again in full on resume
		// (the record stays running), since nobody watched meanwhile.
		x.holds.holdAt(gv.Addr, nil)
		return nil
	}
	note := "baked " + gv.Gate.Bake.String()
	if err := rec(journal.Step{Status: journal.Done, Note: note, StartedAt: started, EndedAt: time.Now()}); err != nil {
		return fmt.Errorf("recording %s: %w", gv.Addr, err)
	}
	x.emit(Event{Type: StepFinished, Address: gv.Addr, Action: GateAction, Message: note, Duration: time.Since(started)})
	return nil
}

// WaitingGate is the gate a run waits at for an operator, from its journal;
// "" when it waits at none.
func WaitingGate(run *journal.Run) string {
	if run == nil {
		return ""
	}
	var out []string
	for addr, s := range run.Steps {
		if s.Action == GateAction && s.Status == journal.Running && s.Note == "waiting for an operator" {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return ""
	}
	return out[0]
}
