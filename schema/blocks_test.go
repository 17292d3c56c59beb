package schema

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// probe has a list of header blocks (at most 2) and an optional tls block
// with a sensitive attribute.
var probe = &Object{
	Attributes: []*Attribute{{Name: "url", Type: cty.String, Required: true}},
	Blocks: []*Block{
		{Name: "header", Nesting: NestingList, MaxItems: 2, Description: "A request header.", Object: &Object{Attributes: []*Attribute{
			{Name: "name", Type: cty.String, Required: true},
			{Name: "value", Type: cty.String},
		}}},
		{Name: "tls", Nesting: NestingSingle, Object: &Object{Attributes: []*Attribute{
			{Name: "insecure", Type: cty.Bool},
			{Name: "client_key", Type: cty.String, Sensitive: true},
		}}},
	},
}

func decodeBody(t *testing.T, o *Object, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	return hcldec.Decode(f.Body, o.DecoderSpec(), nil)
}

func TestBlocksDecodeToTheImpliedType(t *testing.T) {
	require.NoError(t, probe.Validate())
	v, diags := decodeBody(t, probe, `
url = "http://a"
header {
  name  = "X-B"
  value = "2"
}
header {
  name = "X-A"
}
tls {
  insecure = true
}
`)
	require.False(t, diags.HasErrors(), diags.Error())
	assert.True(t, v.Type().Equals(probe.ImpliedType()), "decoded %s, implied %s", v.Type().FriendlyName(), probe.ImpliedType().FriendlyName())
	headers := v.GetAttr("header").AsValueSlice()
	require.Len(t, headers, 2)
	assert.Equal(t, "X-B", headers[0].GetAttr("name").AsString(), "blocks keep the order written")
	assert.True(t, headers[1].GetAttr("value").IsNull())
	assert.True(t, v.GetAttr("tls").GetAttr("insecure").True())

	// Absent blocks: an empty list, a null object.
	v, diags = decodeBody(t, probe, `url = "http://a"`)
	require.False(t, diags.HasErrors(), diags.Error())
	assert.Equal(t, 0, v.GetAttr("header").LengthInt())
	assert.True(t, v.GetAttr("tls").IsNull())
}

func TestBlocksAreChecked(t *testing.T) {
	for src, want := range map[string]string{
		"url = \"a\"\nheader {\n  value = \"1\"\n}":                                              `"name" is required`,
		"url = \"a\"\nheader {\n  name = \"a\"\n  nmae = 1\n}":                                   "Unsupported argument",
		"url = \"a\"\ntls {\n}\ntls {\n}":                                                        `Duplicate tls block`,
		"url = \"a\"\nheader { name = \"a\" }\nheader { name = \"b\" }\nheader { name = \"c\" }": `Too many header blocks`,
		"url = \"a\"\nheaders {\n}":                                                              `Unsupported block type`,
	} {
		_, diags := decodeBody(t, probe, src)
		require.True(t, diags.HasErrors(), src)
		assert.Contains(t, diags.Error(), want, src)
		assert.NotNil(t, diags[0].Subject, "%s: a diagnostic points into the body", src)
	}
	required := &Object{Blocks: []*Block{{Name: "target", Nesting: NestingSingle, Required: true, Object: &Object{}}}}
	_, diags := decodeBody(t, required, ``)
	assert.Contains(t, diags.Error(), `Missing target block`)
}

func TestBlockSchemasAreValidated(t *testing.T) {
	obj := func(bs ...*Block) *Object {
		return &Object{Attributes: []*Attribute{{Name: "x", Type: cty.String}}, Blocks: bs}
	}
	for want, o := range map[string]*Object{
		`"x" is declared twice`:                obj(&Block{Name: "x", Nesting: NestingSingle, Object: &Object{}}),
		`nesting must be`:                      obj(&Block{Name: "b", Object: &Object{}}),
		`has no object`:                        obj(&Block{Name: "b", Nesting: NestingSingle}),
		`with min_items, not required`:         obj(&Block{Name: "b", Nesting: NestingList, Required: true, Object: &Object{}}),
		`are for a list of blocks`:             obj(&Block{Name: "b", Nesting: NestingSingle, MaxItems: 1, Object: &Object{}}),
		`do not make a range`:                  obj(&Block{Name: "b", Nesting: NestingList, MinItems: 3, MaxItems: 2, Object: &Object{}}),
		`cannot hold attributes of type any`:   obj(&Block{Name: "b", Nesting: NestingList, Object: &Object{Attributes: []*Attribute{{Name: "v", Type: cty.DynamicPseudoType}}}}),
		`block "b": attribute "y" has no type`: obj(&Block{Name: "b", Nesting: NestingSingle, Object: &Object{Attributes: []*Attribute{{Name: "y"}}}}),
	} {
		err := o.Validate()
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
	// A result describes a value: no blocks.
	p := ContractPlugin(KindDatabase)
	p.Actions["peek"] = &Action{Name: "peek", Args: &Object{}, Result: probe}
	assert.ErrorContains(t, p.Validate(), "a result is a value and has no blocks")
}

func TestBlocksInAnObjectValue(t *testing.T) {
	// config = { ... } instead of a block: optional blocks may be left out,
	// and so may a block's optional attributes.
	v := cty.ObjectVal(map[string]cty.Value{
		"url":    cty.StringVal("http://a"),
		"header": cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("X-A")})}),
	})
	got, err := convert.Convert(v, probe.ConstraintType())
	require.NoError(t, err)
	assert.True(t, got.GetAttr("header").Index(cty.NumberIntVal(0)).GetAttr("value").IsNull())
	assert.True(t, got.GetAttr("tls").IsNull())
}

func TestRedactReachesIntoBlocks(t *testing.T) {
	assert.True(t, probe.HasSensitive())
	v, diags := decodeBody(t, probe, "url = \"a\"\ntls {\n  client_key = \"k3y\"\n}\nheader {\n  name = \"a\"\n}")
	require.False(t, diags.HasErrors(), diags.Error())
	r := probe.Redact(v)
	assert.Equal(t, Redacted, r.GetAttr("tls").GetAttr("client_key").AsString())
	assert.Equal(t, "a", r.GetAttr("header").Index(cty.NumberIntVal(0)).GetAttr("name").AsString())
	assert.Equal(t, "k3y", v.GetAttr("tls").GetAttr("client_key").AsString(), "the original is untouched")
}

func TestMarkdownDescribesBlocks(t *testing.T) {
	p := ContractPlugin(KindLoadBalancer)
	p.Actions["probe"] = &Action{Name: "probe", Description: "Probes a URL.", Args: probe, Result: &Object{}}
	md := Markdown("fake", "1.0.0", p)
	section := md[strings.Index(md, "## `probe`"):]
	assert.Contains(t, section, "| `header { ... }` | blocks (at most 2) | no | A request header. See `header` below. |")
	assert.Contains(t, section, "| `tls { ... }` | block | no |  See `tls` below. |")
	assert.Contains(t, section, "Block `header`:\n\n| name | type | required | description |")
	assert.Contains(t, section, "| `client_key` | string | no |  *Sensitive: never shown.* |")
}
