package playbooks_test

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
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
