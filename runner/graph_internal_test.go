package runner

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
)

// An unknown collection, or an unknown element in a known one, is a
// diagnostic rather than a panic, whether or not it names a step: the plan
// only skips the deep walk when no step is referenced.
func TestCollectionItemsRefusesUnknowns(t *testing.T) {
	pb := &playbooks.Playbook{}
	rng := hcl.Range{Filename: "main.hcl", Start: hcl.Pos{Line: 3, Column: 14}, End: hcl.Pos{Line: 3, Column: 20}}
	for name, v := range map[string]cty.Value{
		"unknown list":            cty.UnknownVal(cty.List(cty.String)),
		"unknown string in list":  cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.UnknownVal(cty.String)}),
		"unknown name of element": cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"name": cty.UnknownVal(cty.String)})}),
	} {
		t.Run(name, func(t *testing.T) {
			var items []item
			var diags hcl.Diagnostics
			require.NotPanics(t, func() {
				items, diags = collectionItems(pb, hcl.StaticExpr(v, rng), nil, "for_each", "step.x")
			})
			assert.Nil(t, items)
			require.True(t, diags.HasErrors())
			assert.Contains(t, diags[0].Summary, "Invalid for_each")
			assert.Equal(t, rng, *diags[0].Subject)
		})
	}
}
