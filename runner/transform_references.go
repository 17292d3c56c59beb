// Edges from what a step or rollout names: its references (in with, when,
// for_each) and its depends_on. A dependent waits for the vertex standing
// for all of what it names (target: one instance, or a join).

package runner

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
)

// referencesTransform connects each instance to the steps its expressions
// refer to.
type referencesTransform struct{}

func (referencesTransform) Name() string { return "reference edges" }

func (referencesTransform) Transform(b *graphBuild) hcl.Diagnostics {
	b.eachWait(false, true, b.connectTo)
	return nil
}

// dependsOnTransform connects each instance to what its depends_on lists.
type dependsOnTransform struct{}

func (dependsOnTransform) Name() string { return "depends_on edges" }

func (dependsOnTransform) Transform(b *graphBuild) hcl.Diagnostics {
	b.eachWait(true, false, b.connectTo)
	return nil
}

func (b *graphBuild) connectTo(dependent string, ref playbooks.Reference) {
	b.DAG.Connect(dependent, b.target(ref))
}

// eachWait calls fn for every (instance, reference) that becomes an edge,
// taking depends_on, references or both, each instance's in order and then
// each rollout's. A reference to a step of the instance's own rollout
// makes none: the item's chain orders them. What a rollout waits for only
// its first batch waits for: every later batch waits for the one before.
func (b *graphBuild) eachWait(dependsOn, references bool, fn func(dependent string, ref playbooks.Reference)) {
	pick := func(d, r []playbooks.Reference) [2][]playbooks.Reference {
		var out [2][]playbooks.Reference
		if dependsOn {
			out[0] = d
		}
		if references {
			out[1] = r
		}
		return out
	}
	pb := b.Playbook
	for _, inst := range b.Instances {
		s := inst.Step
		for _, refs := range pick(s.DependsOn, s.References) {
			for _, ref := range refs {
				if ref.Kind == "step" && s.Rollout != nil {
					if t := pb.Step(ref.Name); t != nil && t.Rollout == s.Rollout {
						continue
					}
				}
				fn(inst.Addr, ref)
			}
		}
	}
	for _, r := range pb.Rollouts {
		batches := b.Items[r.Name]
		if len(batches) == 0 {
			continue
		}
		for _, key := range batches[0] {
			first := b.itemInsts[r.Name][key][0].Addr
			for _, refs := range pick(r.DependsOn, r.References) {
				for _, ref := range refs {
					fn(first, ref)
				}
			}
		}
	}
}
