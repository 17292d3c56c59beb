// Building the graph as a list of named transforms applied in order, each
// adding one kind of vertex or edge, so that how (say) batches are chained
// is found in one small file and a new kind of edge is one more step.

package runner

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
)

// BuildGraph expands pb into instances and connects them. for_each and
// rollout `over` must be known before the run: they may refer to variables,
// locals and resources, not to step results.
func BuildGraph(pb *playbooks.Playbook) (*Graph, hcl.Diagnostics) {
	return playbookGraph.build(pb)
}

// playbookGraph is how BuildGraph builds. Every edge needs the instances
// and joins at both ends, so expansion and joins come first; the cycle
// check needs every edge, so it comes last.
var playbookGraph = graphBuilder{
	expandTransform{},
	joinsTransform{},
	referencesTransform{},
	dependsOnTransform{},
	itemChainTransform{},
	batchChainTransform{},
	gateTransform{},
	cycleTransform{},
	preflightTransform{},
	verifyTransform{},
}

// graphTransform is one named step of building a graph.
type graphTransform interface {
	Name() string
	Transform(b *graphBuild) hcl.Diagnostics
}

// graphBuilder applies its transforms in order. It stops after one that
// reports an error: those after it assume what it was to build (an
// instance whose for_each failed has no keys to connect).
type graphBuilder []graphTransform

func (gb graphBuilder) build(pb *playbooks.Playbook) (*Graph, hcl.Diagnostics) {
	b := &graphBuild{
		Graph: &Graph{Playbook: pb, DAG: dag.New(), ByStep: map[string][]*StepInstance{}, Items: map[string][][]string{},
			itemInsts: map[string]map[string][]*StepInstance{}},
		joined: map[string]bool{},
	}
	var diags hcl.Diagnostics
	for _, t := range gb {
		diags = append(diags, t.Transform(b)...)
		if diags.HasErrors() {
			break
		}
	}
	return b.Graph, diags
}

// graphBuild is a graph being built: the Graph, and what only its
// transforms need.
type graphBuild struct {
	*Graph
	// joined holds the joins already connected to what they stand for.
	joined map[string]bool
}
