package lbkit_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

func ready(name string) lbkit.Server {
	return lbkit.Server{Name: name, State: lbkit.StateReady, Health: lbkit.HealthUp}
}

func TestPreflightAllReady(t *testing.T) {
	servers := []lbkit.Server{ready("s1"), ready("s2"), ready("s3")}
	in, problems := lbkit.Preflight(servers, lbkit.PreflightArgs{Servers: []string{"s1", "s2", "s3"}, MinInService: 1, MaxParallel: 1})
	assert.Equal(t, 3, in)
	assert.Empty(t, problems)

	// Draining two of three at a time still leaves the one asked for.
	in, problems = lbkit.Preflight(servers, lbkit.PreflightArgs{Servers: []string{"s1", "s2", "s3"}, MinInService: 1, MaxParallel: 2})
	assert.Equal(t, 3, in)
	assert.Empty(t, problems)

	// A server without a health check (nginx without health_urls) is in
	// service as long as it is in rotation.
	servers[1].Health = lbkit.HealthUnknown
	in, problems = lbkit.Preflight(servers, lbkit.PreflightArgs{Servers: []string{"s2"}, MinInService: 2, MaxParallel: 1})
	assert.Equal(t, 3, in)
	assert.Empty(t, problems)

	// min_in_service 0 allows draining every server at once.
	in, problems = lbkit.Preflight(servers, lbkit.PreflightArgs{Servers: []string{"s1", "s2", "s3"}, MinInService: 0, MaxParallel: 3})
	assert.Equal(t, 3, in)
	assert.Empty(t, problems)
}

// TestPreflightEveryProblemAtOnce: an unknown server, one in maint, one
// draining, one down by its health check, and a min_in_service that
// cannot hold are all reported by one call, in the order the rollout's
// servers are listed, the count last.
func TestPreflightEveryProblemAtOnce(t *testing.T) {
	servers := []lbkit.Server{
		ready("s3"),
		{Name: "s1", State: lbkit.StateMaint, Health: lbkit.HealthUnknown},
		ready("s2"),
		{Name: "s4", State: lbkit.StateDrain, Health: lbkit.HealthUp},
		{Name: "s5", State: lbkit.StateReady, Health: lbkit.HealthDown},
	}
	in, problems := lbkit.Preflight(servers, lbkit.PreflightArgs{
		Servers: []string{"s2", "s9", "s1", "s4", "s5"}, MinInService: 2, MaxParallel: 1,
	})
	assert.Equal(t, 2, in, "s2 and s3: ready and up")
	assert.Equal(t, []string{
		`server "s9" is not in the backend (its servers: s1, s2, s3, s4, s5)`,
		`server "s1" is maint, not in rotation: enable it (or find out why it is out) before the run`,
		`server "s4" is drain, not in rotation: enable it (or find out why it is out) before the run`,
		`server "s5" is in rotation but its health check says down`,
		`2 server(s) in service now: draining 1 at a time would leave 1, fewer than min_in_service = 2`,
	}, problems)
}

func TestPreflightMinInService(t *testing.T) {
	servers := []lbkit.Server{ready("s1"), ready("s2"), ready("s3")}
	all := []string{"s1", "s2", "s3"}
	for _, tc := range []struct {
		name        string
		rollout     []string
		min, max    int
		wantProblem string
	}{
		{"three of three with 3 in service", all, 3, 1, "3 server(s) in service now: draining 1 at a time would leave 2, fewer than min_in_service = 3"},
		{"two at a time with 2 in service", all, 2, 2, "3 server(s) in service now: draining 2 at a time would leave 1, fewer than min_in_service = 2"},
		{"more at a time than there are", all, 1, 5, "3 server(s) in service now: draining 3 at a time would leave 0, fewer than min_in_service = 1"},
		{"more in service than there are", all, 4, 1, "3 server(s) in service now: draining 1 at a time would leave 2, fewer than min_in_service = 4"},
		// A rollout over one server drains at most that one, whatever
		// max_parallel says.
		{"one server, max_parallel 2", []string{"s1"}, 2, 2, ""},
		{"one server listed twice, max_parallel 2", []string{"s1", "s1"}, 2, 2, ""},
		{"two servers, max_parallel 3", []string{"s1", "s2"}, 1, 3, ""},
		{"two servers, max_parallel 3, min 2", []string{"s1", "s2"}, 2, 3, "3 server(s) in service now: draining 2 at a time would leave 1, fewer than min_in_service = 2"},
		{"exactly enough", all, 2, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, problems := lbkit.Preflight(servers, lbkit.PreflightArgs{Servers: tc.rollout, MinInService: tc.min, MaxParallel: tc.max})
			assert.Equal(t, 3, in)
			if tc.wantProblem == "" {
				assert.Empty(t, problems)
			} else {
				assert.Equal(t, []string{tc.wantProblem}, problems)
			}
		})
	}
}

func TestPreflightEmptyBackend(t *testing.T) {
	in, problems := lbkit.Preflight(nil, lbkit.PreflightArgs{Servers: []string{"s1"}, MinInService: 1, MaxParallel: 1})
	assert.Zero(t, in)
	assert.Equal(t, []string{
		`server "s1" is not in the backend (its servers: )`,
		"0 server(s) in service now: draining 0 at a time would leave 0, fewer than min_in_service = 1",
	}, problems)
}

// pfBackend is a Backend whose Servers answer is set by the test, and which
// fails every change: preflight must not make any.
type pfBackend struct {
	servers []lbkit.Server
	err     error
	changes int
}

func (b *pfBackend) Drain(context.Context, lbkit.DrainArgs, lbkit.Progress) (lbkit.ServerResult, error) {
	b.changes++
	return lbkit.ServerResult{}, errors.New("preflight drained")
}

func (b *pfBackend) Enable(context.Context, lbkit.EnableArgs, lbkit.Progress) (lbkit.ServerResult, error) {
	b.changes++
	return lbkit.ServerResult{}, errors.New("preflight enabled")
}

func (b *pfBackend) Servers(context.Context) ([]lbkit.Server, error) { return b.servers, b.err }
func (b *pfBackend) CheckDrain(context.Context, string) (bool, string, error) {
	return false, "", nil
}
func (b *pfBackend) CheckEnable(context.Context, string) (bool, string, error) {
	return false, "", nil
}
func (b *pfBackend) Metrics(context.Context) (lbkit.Metrics, error) { return lbkit.Metrics{}, nil }

func pfProvider(t *testing.T, b *pfBackend) plugins.Provider {
	p := sdktest.Provider(t, lbkit.Plugin("pf", "0.0.1", config, func(context.Context, plugins.ConfigureRequest) (lbkit.Backend, error) {
		return b, nil
	}))
	require.NoError(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal}).Err())
	return p
}

func pfArgs(servers []string, min, max cty.Value) cty.Value {
	list := cty.ListValEmpty(cty.String)
	if len(servers) > 0 {
		vals := make([]cty.Value, len(servers))
		for i, s := range servers {
			vals[i] = cty.StringVal(s)
		}
		list = cty.ListVal(vals)
	}
	return cty.ObjectVal(map[string]cty.Value{"servers": list, "min_in_service": min, "max_parallel": max})
}

var null = cty.NullVal(cty.Number)

func TestPreflightAction(t *testing.T) {
	ctx := context.Background()
	b := &pfBackend{servers: []lbkit.Server{ready("s1"), ready("s2"), ready("s3")}}
	p := pfProvider(t, b)

	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1", "s2", "s3"}, null, null)})
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(3),
	})), "%#v", resp.Result)

	// Defaults are min_in_service 1 and max_parallel 1: with one server in
	// service out of two, the rollout cannot drain.
	b.servers = []lbkit.Server{ready("s1"), {Name: "s2", State: lbkit.StateMaint, Health: lbkit.HealthUnknown}}
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1", "s2", "s7"}, null, null)})
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "preflight failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, "3 problem(s):\n"+
		`  - server "s2" is maint, not in rotation: enable it (or find out why it is out) before the run`+"\n"+
		`  - server "s7" is not in the backend (its servers: s1, s2)`+"\n"+
		"  - 1 server(s) in service now: draining 1 at a time would leave 0, fewer than min_in_service = 1",
		resp.Diagnostics[0].Detail)

	// Bad arguments blame the argument.
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, cty.NumberIntVal(-1), null)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "min_in_service", resp.Diagnostics[0].Attribute)
	assert.Contains(t, resp.Diagnostics[0].Detail, "must be 0 or more, not -1")
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, cty.NumberIntVal(0))})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "max_parallel", resp.Diagnostics[0].Attribute)
	assert.Contains(t, resp.Diagnostics[0].Detail, "must be 1 or more, not 0")

	// A load balancer that does not answer says so, with its error.
	b.err = errors.New("admin socket /run/haproxy.sock: connection refused")
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, null)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "the load balancer does not answer: admin socket /run/haproxy.sock: connection refused", resp.Diagnostics[0].Detail)

	assert.Zero(t, b.changes, "preflight changed nothing")
}

// pingBackend is a pfBackend whose load balancer may not be running
// although its servers can be listed.
type pingBackend struct {
	pfBackend
	down error
}

func (b *pingBackend) Ping(context.Context) error { return b.down }

func TestPreflightPingsTheLoadBalancer(t *testing.T) {
	ctx := context.Background()
	b := &pingBackend{pfBackend: pfBackend{servers: []lbkit.Server{ready("s1"), ready("s2")}}}
	p := sdktest.Provider(t, lbkit.Plugin("pf", "0.0.1", config, func(context.Context, plugins.ConfigureRequest) (lbkit.Backend, error) {
		return b, nil
	}))
	require.NoError(t, p.Configure(ctx, plugins.ConfigureRequest{Config: cty.EmptyObjectVal}).Err())
	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, null)})
	require.NoError(t, resp.Diagnostics.Err())

	b.down = errors.New("nginx is not running (pid file /run/nginx.pid: no such file or directory)")
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, null)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "the load balancer does not answer: nginx is not running (pid file /run/nginx.pid: no such file or directory)", resp.Diagnostics[0].Detail)
	assert.Zero(t, b.changes)
}

func TestPreflightNotConfigured(t *testing.T) {
	p := sdktest.Provider(t, lbkit.Plugin("pf", "0.0.1", config, func(context.Context, plugins.ConfigureRequest) (lbkit.Backend, error) {
		return &pfBackend{}, nil
	}))
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, null)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "the pf plugin was not configured", resp.Diagnostics[0].Detail)
}
