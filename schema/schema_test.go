package schema

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

func TestEveryContractIsValid(t *testing.T) {
	for _, k := range Kinds {
		p := &PluginSchema{Kind: k, Config: &Object{}, Actions: Contract(k)}
		require.NoError(t, p.Validate(), k)
		assert.NotEmpty(t, p.Actions)
	}
}

func TestCheckContractNamesEachProblem(t *testing.T) {
	actions := Contract(KindLoadBalancer)
	delete(actions, "status")
	drain := *actions["drain"]
	drain.Args = &Object{Attributes: []*Attribute{
		{Name: "server", Type: cty.Number, Required: true},  // wrong type
		{Name: "timeout", Type: cty.String, Required: true}, // optional in the contract
		{Name: "pool", Type: cty.String, Required: true},    // required extra
	}}
	drain.Result = &Object{Attributes: []*Attribute{{Name: "server", Type: cty.String}}}
	actions["drain"] = &drain
	err := CheckContract(&PluginSchema{Kind: KindLoadBalancer, Config: &Object{}, Actions: actions})
	var ce *ContractError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{
		`drain: argument "server" is number, the contract says string`,
		`drain: does not accept argument "min_in_service"`,
		`drain: requires argument "pool", which the contract does not have`,
		`drain: requires argument "timeout", which the contract makes optional`,
		`drain: result lacks "state"`,
		`missing standard action "status"`,
	}, ce.Problems)
}

func TestVendorMayAddOptionalArgumentsAndActions(t *testing.T) {
	actions := Contract(KindDatabase)
	backup := *actions["backup"]
	backup.Args = &Object{Attributes: append(append([]*Attribute(nil), backup.Args.Attributes...), &Attribute{Name: "compress", Type: cty.Bool})}
	actions["backup"] = &backup
	actions["vacuum"] = &Action{Name: "vacuum", Args: &Object{}, Result: &Object{}}
	assert.NoError(t, (&PluginSchema{Kind: KindDatabase, Config: &Object{}, Actions: actions}).Validate())
}

// An interrupted rollback is settled on resume by running the step again,
// which only an idempotent action allows.
func TestUndoNeedsAnIdempotentAction(t *testing.T) {
	actions := Contract(KindDatabase)
	actions["reindex"] = &Action{Name: "reindex", Args: &Object{}, Result: &Object{}, Undo: "check"}
	err := (&PluginSchema{Kind: KindDatabase, Config: &Object{}, Actions: actions}).Validate()
	assert.ErrorContains(t, err, "action reindex has an undo action but is not idempotent")
	actions["reindex"].Idempotent = true
	assert.NoError(t, (&PluginSchema{Kind: KindDatabase, Config: &Object{}, Actions: actions}).Validate())
}

func TestWireRoundTrip(t *testing.T) {
	a := ContractAction(KindDatabase, "copy")
	ty := a.Result.ImpliedType()
	v := cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "dsn": cty.StringVal("postgres://u:p@h/b"), "method": cty.UnknownVal(cty.String)})
	b, err := EncodeValue(v, ty)
	require.NoError(t, err)
	got, err := DecodeValue(b, ty)
	require.NoError(t, err)
	assert.True(t, got.RawEquals(v), "unknown values survive the wire too")

	tb, err := EncodeType(ty)
	require.NoError(t, err)
	gotTy, err := DecodeType(tb)
	require.NoError(t, err)
	assert.True(t, gotTy.Equals(ty))

	null, err := DecodeValue(nil, ty)
	require.NoError(t, err)
	assert.True(t, null.IsNull())
}

func TestRedact(t *testing.T) {
	a := ContractAction(KindDatabase, "copy")
	v := cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "dsn": cty.StringVal("postgres://u:p@h/b"), "method": cty.StringVal("template")})
	r := a.Result.Redact(v)
	assert.Equal(t, Redacted, r.GetAttr("dsn").AsString())
	assert.Equal(t, "b", r.GetAttr("name").AsString())
	assert.Equal(t, "postgres://u:p@h/b", v.GetAttr("dsn").AsString(), "the original is untouched")
	assert.True(t, a.Result.HasSensitive())
	assert.False(t, ContractAction(KindDatabase, "backup").Result.HasSensitive())
}

func TestDecoderSpecChecksArguments(t *testing.T) {
	spec := ContractAction(KindLoadBalancer, "drain").Args.DecoderSpec()
	decode := func(src string) hcl.Diagnostics {
		f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
		require.False(t, diags.HasErrors())
		_, diags = hcldec.Decode(f.Body, spec, nil)
		return diags
	}
	assert.False(t, decode(`server = "a"`).HasErrors())
	assert.Contains(t, decode(`timeout = "1s"`).Error(), `"server" is required`)
	assert.Contains(t, decode("server = \"a\"\nsrever = 1").Error(), "Unsupported argument")
	assert.Contains(t, decode("server = \"a\"\nmin_in_service = \"many\"").Error(), "a number is required")
}

func TestConstraintTypeMakesOptionalAttributesOptional(t *testing.T) {
	o := &Object{Attributes: []*Attribute{{Name: "a", Type: cty.String, Required: true}, {Name: "b", Type: cty.Number}}}
	ty := o.ConstraintType()
	assert.True(t, ty.AttributeOptional("b"))
	assert.False(t, ty.AttributeOptional("a"))
	require.Error(t, (&Object{Attributes: []*Attribute{{Name: "x", Type: cty.String}, {Name: "x", Type: cty.String}}}).Validate())
}
