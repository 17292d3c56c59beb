// The graph a playbook becomes: its instances, its join vertices, and the
// lookups a run makes in it.

package runner

import (
	"strconv"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
)

// StepInstance is one execution of a step: the step itself, or one of its
// for_each items, or one rollout item's run of it.
type StepInstance struct {
	Addr string // step.drain["node-1"], or step.backup
	Step *playbooks.Step
	// Key is the instance key; Keyed is false for a single-instance step.
	Key   string
	Keyed bool
	// Each is {key, value} for keyed instances, cty.NilVal otherwise.
	Each cty.Value
	// Batch and Item place a rollout instance (both 1-based); 0 outside.
	Batch int
	Item  int
	// Seq is the instance's position in source order, for stable output.
	Seq int

	env *itemEnv // shared by a rollout item's instances; nil elsewhere
}

// Name makes Instance a dag.Vertex.
func (i *StepInstance) Name() string { return i.Addr }

// Graph is a playbook expanded into instances and their dependencies.
type Graph struct {
	Playbook  *playbooks.Playbook
	DAG       *dag.Graph
	Instances []*StepInstance
	// ByStep lists a step's instances in key order.
	ByStep map[string][]*StepInstance
	// Preflights are the preflight blocks' instances: run before the walk,
	// not part of the DAG.
	Preflights []*StepInstance
	// Verifies are the verify blocks' instances: run after a run finishes
	// (and alone in upshift verify), not in the graph either.
	Verifies []*StepInstance
	// Items lists each rollout's items (keys) by batch.
	Items map[string][][]string
	// Gates are the rollouts' gates, in the order they were added (gate.go).
	Gates []*GateVertex
	// itemInsts holds each rollout item's instances in step order
	// (rollout name -> item key), so chains and sibling references need no
	// address lookups.
	itemInsts map[string]map[string][]*StepInstance

	withMu sync.Mutex // steps are decoded concurrently during a run
	withs  map[*playbooks.Step]*withBody

	pendingMu      sync.Mutex
	pendingVals    map[*playbooks.Step]cty.Value
	allPendingVals map[*playbooks.Step]cty.Value
	pendingScopes  map[*playbooks.Step]cty.Value // see pendingScope
}

// InstanceAddr renders the address of an instance.
func InstanceAddr(step string, key string, keyed bool) string {
	if !keyed {
		return "step." + step
	}
	return "step." + step + "[" + strconv.Quote(key) + "]" // %q, without fmt's cost: 11,000 per 1,000 nodes
}

// join is a no-op vertex that waits for every instance of a step (or every
// item of a rollout), so that n dependents of an n-instance step need 2n
// edges rather than n*n. The runner walks it as a no-op.
type join struct{ addr string }

func (j *join) Name() string { return j.addr }

// IsJoin reports whether a vertex of the graph is a join rather than an
// instance.
func IsJoin(v dag.Vertex) bool { _, ok := v.(*join); return ok }

// target is the vertex that stands for "all of ref": the single instance
// of a step, or the join over its instances or over a rollout's items.
func (g *Graph) target(ref playbooks.Reference) string {
	if ref.Kind == "step" {
		if insts := g.ByStep[ref.Name]; len(insts) == 1 {
			return insts[0].Addr
		}
		return "step." + ref.Name + "[*]"
	}
	return "rollout." + ref.Name
}

// lastOf is the instance of a rollout item's last step.
func (g *Graph) lastOf(rollout, key string) *StepInstance {
	insts := g.itemInsts[rollout][key]
	return insts[len(insts)-1]
}

// sibling is the instance of step that belongs to the same rollout item as
// inst, or nil.
func (g *Graph) sibling(inst *StepInstance, step string) *StepInstance {
	for _, t := range g.itemInsts[inst.Step.Rollout.Name][inst.Key] {
		if t.Step.Name == step {
			return t
		}
	}
	return nil
}

var _ dag.Vertex = (*StepInstance)(nil)
