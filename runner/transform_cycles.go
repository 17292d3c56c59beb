// The cycle check: steps that wait for each other, each cycle reported once
// by the steps in it, with file and line.

package runner

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
)

// cycleTransform reports every cycle of the finished graph.
type cycleTransform struct{}

func (cycleTransform) Name() string { return "cycle check" }

func (cycleTransform) Transform(b *graphBuild) hcl.Diagnostics {
	// Kahn's order is the cheap check; only a graph that has a cycle pays
	// for finding and naming it.
	if _, err := b.DAG.TopologicalOrder(); err != nil {
		return b.cycleDiagnostics(err.(*dag.CycleError))
	}
	return nil
}

// cycleDiagnostics turns a cycle between instances into one diagnostic per
// cycle of steps, naming each step with its file and line.
func (g *Graph) cycleDiagnostics(ce *dag.CycleError) hcl.Diagnostics {
	var diags hcl.Diagnostics
	reported := map[string]bool{}
	for _, c := range ce.Cycles {
		var parts []string
		var steps []*playbooks.Step
		for _, name := range c {
			inst, ok := g.DAG.Vertex(name).(*StepInstance)
			if !ok {
				continue // a join: the steps around it say enough
			}
			s := inst.Step
			if len(steps) > 0 && steps[len(steps)-1] == s {
				continue
			}
			steps = append(steps, s)
		}
		if len(steps) > 1 && steps[0] == steps[len(steps)-1] {
			steps = steps[:len(steps)-1]
		}
		for _, s := range steps {
			parts = append(parts, fmt.Sprintf("%s (%s)", s.Address(), playbooks.At(s.DeclRange)))
		}
		key := strings.Join(parts, ",")
		if reported[key] {
			continue
		}
		reported[key] = true
		parts = append(parts, steps[0].Address())
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Dependency cycle",
			Detail:   fmt.Sprintf("These steps wait for each other, so none can start: %s. Remove a depends_on or a reference to break the cycle.", strings.Join(parts, " -> ")),
			Subject:  steps[0].DeclRange.Ptr(),
		})
	}
	return diags
}
