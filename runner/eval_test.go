package runner_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/schema"
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
	inst := func(addr string) *runner.StepInstance {
		v, ok := g.DAG.Vertex(addr).(*runner.StepInstance)
		require.True(t, ok, addr)
		return v
	}
	known := map[string]cty.Value{}
	results := func(i *runner.StepInstance) (cty.Value, bool) { v, ok := known[i.Addr]; return v, ok }
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

// probeSchemas is the contract plus a vendor action whose arguments have
// nested blocks (a list of header blocks, an optional tls block with a
// sensitive attribute), as a plugin's own schema would describe it.
func probeSchemas(_ *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
	p := schema.ContractPlugin(kind)
	if kind == schema.KindLoadBalancer {
		p.Actions["probe"] = &schema.Action{Name: "probe", Idempotent: true, Result: &schema.Object{},
			Args: &schema.Object{
				Attributes: []*schema.Attribute{{Name: "url", Type: cty.String, Required: true}},
				Blocks: []*schema.Block{
					{Name: "header", Nesting: schema.NestingList, MaxItems: 2, Object: &schema.Object{Attributes: []*schema.Attribute{
						{Name: "name", Type: cty.String, Required: true},
						{Name: "value", Type: cty.String},
					}}},
					{Name: "tls", Nesting: schema.NestingSingle, Object: &schema.Object{Attributes: []*schema.Attribute{
						{Name: "client_key", Type: cty.String, Sensitive: true},
					}}},
				},
			}}
		p.Actions["handshake"] = &schema.Action{Name: "handshake", Idempotent: true, Result: &schema.Object{},
			Args: &schema.Object{Blocks: []*schema.Block{
				{Name: "tls", Nesting: schema.NestingSingle, Required: true, Object: &schema.Object{Attributes: []*schema.Attribute{
					{Name: "ca", Type: cty.String},
				}}},
			}}}
	}
	return p, nil
}

func planWithBlocks(t *testing.T, src string) (*runner.Plan, hcl.Diagnostics) {
	t.Helper()
	p := playbooks.NewParser()
	pb, diags := p.LoadFiles(t.TempDir(), map[string]string{"main.hcl": cluster + src}, playbooks.LoadOptions{Env: []string{}, Schemas: probeSchemas})
	if diags.HasErrors() {
		return nil, diags
	}
	g, diags := runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	return runner.MakePlan(g)
}

// TestNestedBlocksInWith: a with body's nested blocks are decoded per
// instance (each included), shown in the plan with their sensitive parts
// hidden, and checked with diagnostics that point at the line.
func TestNestedBlocksInWith(t *testing.T) {
	plan, diags := planWithBlocks(t, `
step "probe" {
  for_each = toset(["n1", "n2"])
  run      = load_balancer.front.probe
  with {
    url = "http://${each.key}/health"
    header {
      name  = "X-Node"
      value = each.key
    }
    header {
      name = "X-Empty"
    }
    tls {
      client_key = "k3y"
    }
  }
}
`)
	require.False(t, diags.HasErrors(), diags.Error())
	require.Len(t, plan.Steps, 2)
	args := plan.Steps[1].Args
	assert.Equal(t, "http://n2/health", args.GetAttr("url").AsString())
	headers := args.GetAttr("header").AsValueSlice()
	require.Len(t, headers, 2)
	assert.Equal(t, "n2", headers[0].GetAttr("value").AsString(), "each reaches into blocks")
	assert.True(t, headers[1].GetAttr("value").IsNull())

	var text, js strings.Builder
	require.NoError(t, plan.WriteText(&text))
	require.NoError(t, plan.WriteJSON(&js))
	assert.Contains(t, text.String(), `header = [{ name = "X-Node", value = "n1" }, { name = "X-Empty", value = null }]`)
	assert.Contains(t, text.String(), `tls    = { client_key = "(sensitive)" }`)
	assert.NotContains(t, text.String(), "k3y")
	assert.NotContains(t, js.String(), "k3y")
	assert.Contains(t, js.String(), `"client_key": "(sensitive)"`)

	_, diags = planWithBlocks(t, `
step "probe" {
  run = load_balancer.front.probe
  with {
    url = "http://a"
    header {
      value = "1"
    }
  }
}
`)
	require.True(t, diags.HasErrors())
	assert.Contains(t, diags.Error(), `"name" is required`)
	require.NotNil(t, diags[0].Subject)
	assert.Equal(t, "main.hcl", diags[0].Subject.Filename)
	assert.Greater(t, diags[0].Subject.Start.Line, 10, "points into the step, not the file's start")

	// A required block missing from a step with no with block at all
	// points at the step and names the action.
	_, diags = planWithBlocks(t, `
step "handshake" {
  run = load_balancer.front.handshake
}
`)
	require.True(t, diags.HasErrors())
	require.NotNil(t, diags[0].Subject)
	assert.Equal(t, "main.hcl", diags[0].Subject.Filename)
	assert.Greater(t, diags[0].Subject.Start.Line, 10, "points at the step")
	assert.Contains(t, diags[0].Detail, "load_balancer.front.handshake")
}

// TestPlanNamesTheInstancesAnErrorCameFrom: an error every instance shares
// is reported once as it is; one that only some instances have is reported
// once per kind, naming those instances, and a second kind of error in
// another instance is not hidden behind the first.
func TestPlanNamesTheInstancesAnErrorCameFrom(t *testing.T) {
	_, diags := planWithBlocks(t, `
locals {
  servers = [
    { name = "a", srv = "a:80" },
    { name = "b" },
    { name = "c" },
    { name = "d", srv = ["not", "a", "string"] },
  ]
}
step "drain" {
  for_each = { for s in local.servers : s.name => s }
  run      = load_balancer.front.drain
  with {
    server = each.value.srv
  }
}
`)
	require.True(t, diags.HasErrors())
	require.Len(t, diags, 2, diags.Error())
	assert.Equal(t, "Unsupported attribute", diags[0].Summary)
	assert.Contains(t, diags[0].Detail, `(in step.drain["b"], step.drain["c"]: 2 of 4 instances)`)
	assert.Equal(t, "Incorrect attribute value type", diags[1].Summary)
	assert.Contains(t, diags[1].Detail, `(in step.drain["d"]: 1 of 4 instances)`)

	// Shared by all: said once, with no instance list.
	_, diags = planWithBlocks(t, `
step "drain" {
  for_each = toset(["a", "b", "c"])
  run      = load_balancer.front.drain
  with {
    server = each.value.srv
  }
}
`)
	require.True(t, diags.HasErrors())
	require.Len(t, diags, 1, diags.Error())
	assert.NotContains(t, diags[0].Detail, "instances)")
}
