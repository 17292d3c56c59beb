package lbkit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

// fake is a Backend that records the arguments it was given.
type fake struct {
	drain  lbkit.DrainArgs
	enable lbkit.EnableArgs
	maint  bool
}

func (f *fake) Drain(_ context.Context, a lbkit.DrainArgs, progress lbkit.Progress) (lbkit.ServerResult, error) {
	if a.Server != "s1" {
		return lbkit.ServerResult{}, sdk.ArgError("server", "no server %q", a.Server)
	}
	f.drain, f.maint = a, true
	progress.Printf("drained %s", a.Server)
	return lbkit.ServerResult{Server: a.Server, State: lbkit.StateMaint}, nil
}

func (f *fake) Enable(_ context.Context, a lbkit.EnableArgs, _ lbkit.Progress) (lbkit.ServerResult, error) {
	f.enable, f.maint = a, false
	return lbkit.ServerResult{}, errors.New("health check says no")
}

func (f *fake) Servers(context.Context) ([]lbkit.Server, error) {
	return []lbkit.Server{{Name: "s1", State: lbkit.StateReady, Health: lbkit.HealthUp, Sessions: 2}}, nil
}

func (f *fake) CheckDrain(_ context.Context, server string) (bool, string, error) {
	return f.maint, server + " checked", nil
}

func (f *fake) CheckEnable(context.Context, string) (bool, string, error) { return !f.maint, "", nil }

func (f *fake) Metrics(context.Context) (lbkit.Metrics, error) {
	s1 := lbkit.Counters{Requests: 10, HTTP: [5]int64{0, 8, 0, 0, 2}, ConnectionErrors: 1, Redispatches: 1, Sessions: 3}
	var backend lbkit.Counters
	backend.Add(s1)
	backend.Add(lbkit.Counters{Requests: 4, HTTP: [5]int64{0, 0, 0, 0, 4}}) // no server took these
	return lbkit.Metrics{Backend: backend, Servers: []lbkit.ServerCounters{{Name: "s1", Counters: s1}}}, nil
}

var config = &schema.Object{Attributes: []*schema.Attribute{{Name: "name", Type: cty.String}}}

func newPlugin(f *fake) *sdk.Plugin {
	return lbkit.Plugin("fake", "0.0.1", config, func(_ context.Context, req plugins.ConfigureRequest) (lbkit.Backend, error) {
		var c struct {
			Name string `cty:"name" default:"x"`
		}
		if err := sdk.Decode(req.Config, &c); err != nil {
			return nil, err
		}
		if c.Name == "bad" {
			return nil, sdk.ArgError("name", "is bad")
		}
		return f, nil
	})
}

func args(kv ...string) cty.Value {
	m := map[string]cty.Value{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = cty.StringVal(kv[i+1])
	}
	return cty.ObjectVal(m)
}

func TestNotConfiguredGuard(t *testing.T) {
	p := sdktest.Provider(t, newPlugin(&fake{}))
	for action, a := range map[string]cty.Value{"drain": args("server", "s1"), "enable": args("server", "s1"), "status": cty.EmptyObjectVal} {
		resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: a})
		require.True(t, resp.Diagnostics.HasErrors(), action)
		assert.Equal(t, "the fake plugin was not configured", resp.Diagnostics[0].Detail, action)
	}
	cr := p.Check(context.Background(), plugins.InvokeRequest{Action: "drain", Args: args("server", "s1")})
	assert.Equal(t, plugins.CheckUnknown, cr.State)

	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: args("name", "bad")})
	require.True(t, d.HasErrors())
	assert.Equal(t, "name", d[0].Attribute)
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "status", Args: cty.EmptyObjectVal})
	require.True(t, resp.Diagnostics.HasErrors(), "a failed Configure leaves the plugin unconfigured")
}

func TestStandardActions(t *testing.T) {
	f := &fake{}
	p := sdktest.Provider(t, newPlugin(f))
	ctx := context.Background()
	require.False(t, p.Configure(ctx, plugins.ConfigureRequest{Config: cty.EmptyObjectVal}).HasErrors())

	var lines []string
	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "drain", Args: args("server", "s1"), Progress: func(l string) { lines = append(lines, l) }})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, lbkit.DrainArgs{Server: "s1", Timeout: 60 * time.Second, MinInService: 1}, f.drain, "defaults")
	assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
	assert.Equal(t, []string{"drained s1"}, lines)

	for _, tc := range []struct {
		args cty.Value
		attr string
	}{
		{args("server", "s1", "timeout", "soon"), "timeout"},
		{args("server", "s1", "timeout", "0s"), "timeout"},
		{cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s1"), "min_in_service": cty.NumberIntVal(-1)}), "min_in_service"},
		{args("server", "s9"), "server"},
	} {
		resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "drain", Args: tc.args})
		require.True(t, resp.Diagnostics.HasErrors(), "%#v", tc.args)
		assert.Equal(t, tc.attr, resp.Diagnostics[0].Attribute)
	}

	cr := p.Check(ctx, plugins.InvokeRequest{Action: "drain", Args: args("server", "s1")})
	require.Equal(t, plugins.CheckApplied, cr.State, "%v", cr.Diagnostics.Err())
	assert.Equal(t, "s1 checked", cr.Detail)
	assert.Equal(t, "maint", cr.Result.GetAttr("state").AsString())
	assert.Equal(t, "s1", cr.Result.GetAttr("server").AsString())

	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "enable", Args: args("server", "s1", "timeout", "5s")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "enable failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, lbkit.EnableArgs{Server: "s1", Timeout: 5 * time.Second}, f.enable)

	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "status", Args: cty.EmptyObjectVal})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	s := resp.Result.GetAttr("servers").Index(cty.NumberIntVal(0))
	assert.Equal(t, "s1", s.GetAttr("name").AsString())
	assert.Equal(t, "up", s.GetAttr("health").AsString())
	n, _ := s.GetAttr("sessions").AsBigFloat().Int64()
	assert.Equal(t, int64(2), n)
}

func TestMetricsFitTheContract(t *testing.T) {
	p := sdktest.Provider(t, newPlugin(&fake{}))
	ctx := context.Background()
	require.False(t, p.Configure(ctx, plugins.ConfigureRequest{Config: cty.EmptyObjectVal}).HasErrors())
	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "metrics", Args: cty.EmptyObjectVal})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	num := func(v cty.Value, attr string) int64 {
		n, _ := v.GetAttr(attr).AsBigFloat().Int64()
		return n
	}
	b := resp.Result.GetAttr("backend")
	assert.Equal(t, int64(14), num(b, "requests"))
	assert.Equal(t, int64(6), num(b, "http_5xx"), "the backend counts what no server took")
	assert.Equal(t, int64(8), num(b, "http_2xx"))
	s := resp.Result.GetAttr("servers").Index(cty.NumberIntVal(0))
	assert.Equal(t, "s1", s.GetAttr("name").AsString())
	assert.Equal(t, int64(1), num(s, "connection_errors"))
	assert.Equal(t, int64(1), num(s, "redispatches"))
	assert.Equal(t, int64(3), num(s, "sessions"))
	for _, name := range schema.CounterNames() {
		assert.True(t, b.Type().HasAttribute(name), name)
	}
}
