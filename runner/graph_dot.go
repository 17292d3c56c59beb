// The graph drawn in Graphviz DOT: runner says how a step instance, a
// rollout batch and a join look; dag.WriteDOT does the drawing.

package runner

import (
	"fmt"
	"io"
	"strings"

	"github.com/upshift-dev/upshift/runner/dag"
)

// WriteDOT renders the graph in Graphviz DOT, after transitive reduction,
// with one cluster per rollout batch.
func (g *Graph) WriteDOT(out io.Writer) error {
	// Steps outside rollouts first, then each batch as a cluster, then the
	// joins: the order the drawing has always had.
	nodes := make([]dag.DOTNode, 0, g.DAG.Len())
	var inRollouts []dag.DOTNode
	clusters := map[string]*dag.DOTCluster{}
	for _, inst := range g.Instances {
		n := dag.DOTNode{Name: inst.Addr, Attrs: []dag.DOTAttr{{Key: "label", Value: inst.Addr + "\n" + inst.Step.Run.String()}}}
		r := inst.Step.Rollout
		if r == nil {
			nodes = append(nodes, n)
			continue
		}
		name := fmt.Sprintf("cluster_%s_batch_%d", r.Name, inst.Batch)
		if clusters[name] == nil {
			clusters[name] = &dag.DOTCluster{Name: name, Attrs: []dag.DOTAttr{{Key: "label", Value: fmt.Sprintf("rollout %s, batch %d", r.Name, inst.Batch)}}}
		}
		n.Cluster = clusters[name]
		inRollouts = append(inRollouts, n)
	}
	nodes = append(nodes, inRollouts...)
	for _, name := range g.DAG.Names() {
		if IsJoin(g.DAG.Vertex(name)) {
			nodes = append(nodes, dag.DOTNode{Name: name, Attrs: []dag.DOTAttr{
				{Key: "shape", Value: "diamond", Bare: true},
				{Key: "label", Value: "all of " + strings.TrimSuffix(name, "[*]")},
			}})
		}
	}
	return g.DAG.WriteDOT(out, dag.DOTOptions{
		Name:  "upshift",
		Attrs: []dag.DOTAttr{{Key: "rankdir", Value: "LR"}},
		NodeDefaults: []dag.DOTAttr{
			{Key: "shape", Value: "box", Bare: true},
			{Key: "fontname", Value: "Helvetica"},
			{Key: "fontsize", Value: "10", Bare: true},
		},
		Nodes:  nodes,
		Reduce: true,
	})
}
