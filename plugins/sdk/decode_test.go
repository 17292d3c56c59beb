package sdk_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

type header struct {
	Name  string `cty:"name"`
	Value string `cty:"value" default:"-"`
}

type decodeConfig struct {
	Socket  string            `cty:"socket"`
	Timeout time.Duration     `cty:"timeout,positive" default:"5s"`
	Retries int               `cty:"retries" default:"3"`
	Verbose bool              `cty:"verbose"`
	Labels  map[string]string `cty:"labels"`
	Header  []header          `cty:"header"`
	TLS     *struct {
		Insecure bool `cty:"insecure"`
	} `cty:"tls"`
}

var decodeSchema = &schema.Object{
	Attributes: []*schema.Attribute{
		{Name: "socket", Type: cty.String, Required: true},
		{Name: "timeout", Type: cty.String},
		{Name: "retries", Type: cty.Number},
		{Name: "verbose", Type: cty.Bool},
		{Name: "labels", Type: cty.Map(cty.String)},
	},
	Blocks: []*schema.Block{
		{Name: "header", Nesting: schema.NestingList, Object: &schema.Object{Attributes: []*schema.Attribute{
			{Name: "name", Type: cty.String, Required: true}, {Name: "value", Type: cty.String},
		}}},
		{Name: "tls", Nesting: schema.NestingSingle, Object: &schema.Object{Attributes: []*schema.Attribute{
			{Name: "insecure", Type: cty.Bool},
		}}},
	},
}

// conformed is what a plugin's Configure receives: the value conformed to
// its schema, every optional attribute present and null when unset.
func conformed(t *testing.T, attrs map[string]cty.Value) cty.Value {
	t.Helper()
	v, probs := schema.Conform(decodeSchema, cty.ObjectVal(attrs), true)
	require.Empty(t, probs)
	return v
}

func TestDecodeDefaultsAndNesting(t *testing.T) {
	var c decodeConfig
	require.NoError(t, sdk.Decode(conformed(t, map[string]cty.Value{"socket": cty.StringVal("/run/s")}), &c))
	assert.Equal(t, "/run/s", c.Socket)
	assert.Equal(t, 5*time.Second, c.Timeout, "default")
	assert.Equal(t, 3, c.Retries, "default")
	assert.Nil(t, c.Labels)
	assert.Empty(t, c.Header)
	assert.Nil(t, c.TLS, "an absent single block stays nil")

	c = decodeConfig{}
	require.NoError(t, sdk.Decode(conformed(t, map[string]cty.Value{
		"socket": cty.StringVal("/run/s"), "timeout": cty.StringVal("1m30s"), "retries": cty.NumberIntVal(0),
		"labels": cty.MapVal(map[string]cty.Value{"a": cty.StringVal("b")}),
		"header": cty.TupleVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("X-A"), "value": cty.StringVal("1")}),
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("X-B")}),
		}),
		"tls": cty.ObjectVal(map[string]cty.Value{"insecure": cty.True}),
	}), &c))
	assert.Equal(t, 90*time.Second, c.Timeout)
	assert.Equal(t, 0, c.Retries, "a value given wins over the default")
	assert.Equal(t, map[string]string{"a": "b"}, c.Labels)
	assert.Equal(t, []header{{"X-A", "1"}, {"X-B", "-"}}, c.Header)
	require.NotNil(t, c.TLS)
	assert.True(t, c.TLS.Insecure)
}

func TestDecodeErrorsNameThePath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attrs  map[string]cty.Value
		path   string
		detail string
	}{
		{"bad duration", map[string]cty.Value{"timeout": cty.StringVal("soon")}, "timeout", `"soon" is not a duration (write it like "60s"`},
		{"negative duration", map[string]cty.Value{"timeout": cty.StringVal("-1s")}, "timeout", `duration "-1s" is negative`},
		{"zero when positive", map[string]cty.Value{"timeout": cty.StringVal("0s")}, "timeout", "must be more than 0s"},
		{"fraction for an int", map[string]cty.Value{"retries": cty.NumberFloatVal(1.5)}, "retries", "whole number"},
		{"nested", map[string]cty.Value{"header": cty.ListVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("ok")}),
			cty.ObjectVal(map[string]cty.Value{"name": cty.UnknownVal(cty.String)}),
		})}, "header[1].name", "not known yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := map[string]cty.Value{"socket": cty.StringVal("s")}
			for k, v := range tc.attrs {
				attrs[k] = v
			}
			var c decodeConfig
			v, probs := schema.Conform(decodeSchema, cty.ObjectVal(attrs), false)
			require.Empty(t, probs)
			err := sdk.Decode(v, &c)
			require.Error(t, err)
			path, ok := sdk.ArgPath(err)
			require.True(t, ok, "an ArgError: %v", err)
			assert.Equal(t, tc.path, path)
			assert.Contains(t, err.Error(), tc.detail)
		})
	}

	var typo struct {
		S string `cty:"sockett"`
	}
	err := sdk.Decode(conformed(t, map[string]cty.Value{"socket": cty.StringVal("s")}), &typo)
	assert.ErrorContains(t, err, `field S: no attribute "sockett"`)
	_, isArg := sdk.ArgPath(err)
	assert.False(t, isArg, "a typo in the plugin is not the playbook's fault")
	assert.Error(t, sdk.Decode(cty.EmptyObjectVal, typo), "not a pointer")
}

// TestArgErrorAtReachesTheHost: a nested path survives the gRPC trip and
// the wrapping of the error.
func TestArgErrorAtReachesTheHost(t *testing.T) {
	k := schema.KindLoadBalancer
	run := func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }
	p := sdktest.Provider(t, &sdk.Plugin{
		Name: "paths", Version: "0.0.1", Kind: k, Config: decodeSchema,
		Configure: func(_ context.Context, req plugins.ConfigureRequest) error {
			var c decodeConfig
			if err := sdk.Decode(req.Config, &c); err != nil {
				return fmt.Errorf("wrapped: %w", err)
			}
			if len(c.Header) > 1 && c.Header[1].Name == "bad" {
				return sdk.ArgErrorAt(cty.GetAttrPath("header").IndexInt(1).GetAttr("name"), "no %q", c.Header[1].Name)
			}
			return nil
		},
		Actions: []*sdk.Action{
			{Schema: schema.ContractAction(k, "drain"), Run: run},
			{Schema: schema.ContractAction(k, "enable"), Run: run},
			{Schema: schema.ContractAction(k, "status"), Run: run},
			{Schema: schema.ContractAction(k, "metrics"), Run: run},
			{Schema: schema.ContractAction(k, "preflight"), Run: run},
			{Schema: schema.ContractAction(k, "verify"), Run: run},
		},
	})
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{
		"socket": cty.StringVal("s"),
		"header": cty.TupleVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("ok")}),
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("bad")}),
		}),
	})})
	require.True(t, d.HasErrors())
	assert.Equal(t, "header[1].name", d[0].Attribute)
	assert.Equal(t, `no "bad"`, d[0].Detail)

	d = p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{
		"socket": cty.StringVal("s"), "timeout": cty.StringVal("later"),
	})})
	require.True(t, d.HasErrors())
	assert.Equal(t, "timeout", d[0].Attribute, "a wrapped decode error keeps its path")
}
