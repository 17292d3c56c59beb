package runner

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/playbooks"
)

func TestGraphBuilderSteps(t *testing.T) {
	var names []string
	for _, s := range playbookGraph {
		names = append(names, s.Name())
	}
	assert.Equal(t, []string{"expand instances", "joins", "reference edges", "depends_on edges", "rollout item chains", "batch chaining", "gates", "cycle check", "expand preflights", "expand verify blocks"}, names)
}

type fakeTransform struct {
	name  string
	diags hcl.Diagnostics
	ran   *[]string
}

func (f fakeTransform) Name() string { return f.name }

func (f fakeTransform) Transform(*graphBuild) hcl.Diagnostics {
	*f.ran = append(*f.ran, f.name)
	return f.diags
}

// A warning lets the build go on; an error stops it, keeping every
// diagnostic so far.
func TestGraphBuilderStopsAtAnError(t *testing.T) {
	var ran []string
	warn := hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "w"}}
	fail := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "e"}}
	g, diags := graphBuilder{
		fakeTransform{"a", warn, &ran},
		fakeTransform{"b", fail, &ran},
		fakeTransform{"c", nil, &ran},
	}.build(&playbooks.Playbook{})
	require.NotNil(t, g)
	assert.Equal(t, []string{"a", "b"}, ran)
	assert.Equal(t, append(warn, fail...), diags)
}

// A rollout's step waited for from outside the rollout gets its join from
// the joins step, added after everything expansion placed, in the order of
// first use; a rollout without items waits for nothing.
func TestJoinsForRolloutStepsInOrderOfUse(t *testing.T) {
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": `
node_pool "cluster" {
  plugin = "mock"
  nodes  = [{ name = "n1" }, { name = "n2" }]
}
rollout "up" {
  over = node_pool.cluster.nodes
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
  }
  step "start" {
    run = node_pool.cluster.start
    with {
      node = each.value.name
    }
  }
}
rollout "none" {
  over       = []
  depends_on = [step.stop]
  step "x" {
    run = node_pool.cluster.start
    with {
      node = "n1"
    }
  }
}
step "after" {
  run = node_pool.cluster.start
  with {
    node = "n1"
  }
  depends_on = [step.start, step.stop]
}
`}, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	g, diags := BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	names := g.DAG.Names()
	assert.Equal(t, []string{"step.after", "step.start[*]", "step.stop[*]"}, names[len(names)-3:])
	assert.Equal(t, []string{"step.start[*]", "step.stop[*]"}, g.DAG.Dependencies("step.after"))
	assert.Equal(t, []string{`step.stop["n1"]`, `step.stop["n2"]`}, g.DAG.Dependencies("step.stop[*]"))
	assert.Empty(t, g.ByStep["x"])
}
