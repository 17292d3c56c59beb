// Joins: a no-op vertex stands for "all of" a keyed step or a rollout, so
// that n dependents of n instances cost 2n edges rather than n*n.

package runner

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
)

// joinsTransform connects each join that an edge will point at to what it
// stands for. Expansion placed the joins of top-level steps and rollouts;
// one for a rollout's step, waited for from outside the rollout, is added
// here, in the order of first use, which is the order the vertices have
// always had.
type joinsTransform struct{}

func (joinsTransform) Name() string { return "joins" }

func (joinsTransform) Transform(b *graphBuild) hcl.Diagnostics {
	b.eachWait(true, true, func(_ string, ref playbooks.Reference) { b.join(ref) })
	return nil
}

// join makes the vertex standing for all of ref wait for what it stands
// for, once.
func (b *graphBuild) join(ref playbooks.Reference) {
	addr := b.target(ref)
	if b.joined[addr] || ref.Kind == "step" && len(b.ByStep[ref.Name]) == 1 {
		return // connected already, or a single instance that needs no join
	}
	b.joined[addr] = true
	b.addJoin(addr)
	if ref.Kind == "step" {
		for _, t := range b.ByStep[ref.Name] {
			b.DAG.Connect(addr, t.Addr)
		}
		return
	}
	for _, keys := range b.Items[ref.Name] {
		for _, key := range keys {
			b.DAG.Connect(addr, b.lastOf(ref.Name, key).Addr)
		}
	}
}

// addJoin adds a join vertex unless expansion already placed it.
func (b *graphBuild) addJoin(addr string) {
	if b.DAG.Vertex(addr) == nil {
		b.DAG.Add(&join{addr})
	}
}
