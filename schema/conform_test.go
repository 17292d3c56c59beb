package schema

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

func TestPathString(t *testing.T) {
	assert.Equal(t, "", PathString(nil))
	assert.Equal(t, "socket", PathString(cty.GetAttrPath("socket")))
	assert.Equal(t, "header[1].name", PathString(cty.GetAttrPath("header").IndexInt(1).GetAttr("name")))
	assert.Equal(t, `env["HOME"]`, PathString(cty.GetAttrPath("env").Index(cty.StringVal("HOME"))))
}

func TestConformFillsNullsAndConverts(t *testing.T) {
	v, probs := Conform(probe, cty.ObjectVal(map[string]cty.Value{
		"url": cty.StringVal("http://a").Mark("sensitive"),
		"header": cty.TupleVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("X-A")}),
		}),
	}), true)
	require.Empty(t, probs)
	assert.True(t, v.Type().Equals(probe.ImpliedType()), "%s", v.Type().FriendlyName())
	assert.False(t, v.ContainsMarked(), "marks are removed")
	h := v.GetAttr("header").Index(cty.NumberIntVal(0))
	assert.Equal(t, "X-A", h.GetAttr("name").AsString())
	assert.True(t, h.GetAttr("value").IsNull())
	assert.True(t, v.GetAttr("tls").IsNull())

	empty, probs := Conform(&Object{}, cty.NilVal, true)
	require.Empty(t, probs)
	assert.Equal(t, cty.EmptyObjectVal, empty)
}

func TestConformProblemsNameTheirPath(t *testing.T) {
	header := func(attrs map[string]cty.Value) cty.Value { return cty.ObjectVal(attrs) }
	_, probs := Conform(probe, cty.ObjectVal(map[string]cty.Value{
		"header": cty.TupleVal([]cty.Value{
			header(map[string]cty.Value{"name": cty.StringVal("X-A")}),
			header(map[string]cty.Value{"value": cty.StringVal("1")}),
		}),
		"tls":   cty.ObjectVal(map[string]cty.Value{"insecure": cty.StringVal("maybe")}),
		"extra": cty.True,
	}), true)
	require.Len(t, probs, 4, "%v", probs)
	assert.Equal(t, Problem{Path: "extra", Message: `unsupported attribute "extra"`}, probs[0])
	assert.Equal(t, Problem{Path: "header[1].name", Message: `attribute "name" is required`}, probs[1])
	assert.Equal(t, "tls.insecure", probs[2].Path)
	assert.Contains(t, probs[2].Message, "wrong type")
	assert.Equal(t, Problem{Path: "url", Message: `attribute "url" is required`}, probs[3])
	assert.Contains(t, probs.Error(), `header[1].name: attribute "name" is required; `)

	three := cty.ListVal([]cty.Value{
		header(map[string]cty.Value{"name": cty.StringVal("a")}),
		header(map[string]cty.Value{"name": cty.StringVal("b")}),
		header(map[string]cty.Value{"name": cty.StringVal("c")}),
	})
	_, probs = Conform(probe, cty.ObjectVal(map[string]cty.Value{"url": cty.StringVal("u"), "header": three}), true)
	require.Len(t, probs, 1)
	assert.Equal(t, Problem{Path: "header", Message: `3 "header" blocks given; between 0 and 2 allowed`}, probs[0])

	_, probs = Conform(probe, cty.StringVal("x"), true)
	assert.Equal(t, Problems{{Message: "an object is required, not string"}}, probs)
}

func TestConformUnknowns(t *testing.T) {
	args := cty.ObjectVal(map[string]cty.Value{"url": cty.UnknownVal(cty.String)})
	_, probs := Conform(probe, args, true)
	assert.Equal(t, Problems{{Path: "url", Message: "the value is not known yet"}}, probs)

	v, probs := Conform(probe, args, false)
	require.Empty(t, probs)
	assert.False(t, v.GetAttr("url").IsKnown())

	v, probs = Conform(probe, cty.DynamicVal, false)
	require.Empty(t, probs)
	assert.True(t, v.Type().Equals(probe.ImpliedType()))
	assert.False(t, v.IsKnown())
}
