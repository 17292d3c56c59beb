package runner_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/runner"
)

// TestDecodeArgsSeesResultsAsTheyArrive covers the three ways a step reads
// another's result: one instance of a keyed step, a single step, and its
// own rollout item's earlier step. Before anything has finished (a plan)
// every result is unknown; once some have, exactly those are known.
func TestDecodeArgsSeesResultsAsTheyArrive(t *testing.T) {
	f := newFixture(t, `
step "backup_data" {
  for_each = toset(["n1", "n2", "n3"])
  run      = node_pool.cluster.backup_data
  with {
    node = each.key
    to   = "/backup/${each.key}"
  }
}
step "copy" {
  run = database.main.copy
  with { to = "b" }
}
rollout "upgrade" {
  over = node_pool.cluster.nodes
  step "stop" {
    run = node_pool.cluster.stop
    with { node = each.value.name }
  }
  step "exec" {
    run = node_pool.cluster.exec
    with {
      node    = step.stop.result.node
      command = [step.backup_data["n2"].result.path, step.copy.result.name]
    }
  }
}
`)
	g := f.graph
	inst := func(addr string) *runner.Instance {
		v, ok := g.DAG.Vertex(addr).(*runner.Instance)
		require.True(t, ok, addr)
		return v
	}
	known := map[string]cty.Value{}
	results := func(i *runner.Instance) (cty.Value, bool) { v, ok := known[i.Addr]; return v, ok }
	decode := func(addr string) cty.Value {
		args, diags := g.DecodeArgs(inst(addr), results)
		require.False(t, diags.HasErrors(), diags.Error())
		return args
	}

	// Nothing finished: every instance sees unknowns of the right types.
	for _, n := range []string{"n1", "n2", "n3"} {
		args := decode(`step.exec["` + n + `"]`)
		assert.False(t, args.GetAttr("node").IsKnown(), n)
		assert.False(t, args.GetAttr("command").IsWhollyKnown(), n)
	}

	// node-2's backup and the copy are done; stop is done for n1 only.
	known[`step.backup_data["n2"]`] = cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal("/backup/n2"), "bytes": cty.NumberIntVal(7)})
	known[`step.copy`] = cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "dsn": cty.StringVal("db/b")})
	known[`step.stop["n1"]`] = cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("n1")})

	args := decode(`step.exec["n1"]`)
	assert.Equal(t, cty.StringVal("n1"), args.GetAttr("node"), "its own item's stop")
	assert.Equal(t, cty.ListVal([]cty.Value{cty.StringVal("/backup/n2"), cty.StringVal("b")}), args.GetAttr("command"))

	args = decode(`step.exec["n3"]`)
	assert.False(t, args.GetAttr("node").IsKnown(), "n3's own stop has not run, n1's must not leak in")
	assert.True(t, args.GetAttr("command").IsWhollyKnown())
}
