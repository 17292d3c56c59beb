// Verify: the playbook's verify blocks, probes of the end state (every
// node on the target version and writable, the marker in place, the load
// balancer serving from all), run after a run finishes and alone in
// `upshift verify`, on any cluster the playbook describes.

package runner

import (
	"context"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/plugins"
)

// verifyTransform expands the verify blocks into their instances, kept
// beside the graph like the preflights.
type verifyTransform struct{}

func (verifyTransform) Name() string { return "expand verify blocks" }

func (verifyTransform) Transform(b *graphBuild) hcl.Diagnostics {
	var diags hcl.Diagnostics
	b.Verifies, diags = expandProbes(b, b.Playbook.Verifies)
	return diags
}

// Verify runs every verify instance of g at once, as Preflight runs the
// preflights, and reports them all.
func Verify(ctx context.Context, g *Graph, providers map[string]plugins.Provider, events Sink, parallelism int) *ProbeReport {
	rep := runProbes(ctx, g, g.Verifies, providers, events, parallelism)
	rep.Verify = true
	return rep
}
