package playbooks_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

func eval(t *testing.T, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "expr.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	ctx := &hcl.EvalContext{
		Functions: playbooks.Functions("."),
		Variables: map[string]cty.Value{
			"nodes": cty.TupleVal([]cty.Value{
				cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("a"), "up": cty.True}),
				cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "up": cty.False}),
			}),
			"unknown": cty.UnknownVal(cty.List(cty.Bool)),
		},
	}
	return expr.Value(ctx)
}

func TestAllTrueAnyTrue(t *testing.T) {
	for src, want := range map[string]cty.Value{
		`alltrue([])`:                             cty.True,
		`anytrue([])`:                             cty.False,
		`alltrue([true, true])`:                   cty.True,
		`alltrue([true, false])`:                  cty.False,
		`anytrue([false, true])`:                  cty.True,
		`anytrue([false, false])`:                 cty.False,
		`alltrue(["true", true])`:                 cty.True, // converts like list(bool) would
		`alltrue(tolist([true]))`:                 cty.True,
		`anytrue(toset([false]))`:                 cty.False,
		`alltrue([for n in nodes : can(n.name)])`: cty.True,
		`alltrue([for n in nodes : n.up])`:        cty.False,
		`anytrue([for n in nodes : n.up])`:        cty.True,
		`alltrue(unknown)`:                        cty.UnknownVal(cty.Bool),
	} {
		got, diags := eval(t, src)
		require.False(t, diags.HasErrors(), "%s: %s", src, diags.Error())
		assert.True(t, got.RawEquals(want), "%s = %#v, want %#v", src, got, want)
	}
	for src, msg := range map[string]string{
		`alltrue("yes")`:        "list of bool required, but have string",
		`alltrue([true, null])`: "element 1 is null",
		`anytrue([false, "x"])`: "element 1: a bool is required",
		`alltrue(null)`:         "must not be null",
	} {
		_, diags := eval(t, src)
		require.True(t, diags.HasErrors(), src)
		assert.Contains(t, diags.Error(), msg, src)
	}
}

// TestConfigWithNestedBlocks: before init only the contract is known, so a
// config with nested blocks is accepted as not yet known; with the plugin's
// schema it is decoded, and checked, like any body.
func TestConfigWithNestedBlocks(t *testing.T) {
	src := map[string]string{"main.hcl": `
load_balancer "front" {
  plugin = "fancy"
  config {
    socket = "/run/lb.sock"
    backend {
      name = "app"
    }
    backend {
      name = "admin"
    }
  }
}
`}
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	assert.False(t, pb.Resources["load_balancer.front"].Config.IsKnown())

	withSchema := func(_ *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
		p := schema.ContractPlugin(kind)
		p.Config = &schema.Object{
			Attributes: []*schema.Attribute{{Name: "socket", Type: cty.String, Required: true}},
			Blocks: []*schema.Block{{Name: "backend", Nesting: schema.NestingList, MinItems: 1, Object: &schema.Object{
				Attributes: []*schema.Attribute{{Name: "name", Type: cty.String, Required: true}},
			}}},
		}
		return p, nil
	}
	pb, diags = playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}, Schemas: withSchema})
	require.False(t, diags.HasErrors(), diags.Error())
	backends := pb.Resources["load_balancer.front"].Config.GetAttr("backend").AsValueSlice()
	require.Len(t, backends, 2)
	assert.Equal(t, "admin", backends[1].GetAttr("name").AsString())

	src["main.hcl"] = strings.Replace(src["main.hcl"], `name = "admin"`, `nmae = "admin"`, 1)
	_, diags = playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}, Schemas: withSchema})
	require.True(t, diags.HasErrors())
	lines := map[string]int{}
	for _, d := range diags {
		lines[d.Summary] = d.Subject.Start.Line
	}
	assert.Equal(t, map[string]int{"Missing required argument": 9, "Unsupported argument": 10}, lines, "each at the misspelt block's lines")
}
