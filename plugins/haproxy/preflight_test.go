package main

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

func preflightArgs(min, max int64, servers ...string) map[string]cty.Value {
	list := make([]cty.Value, len(servers))
	for i, s := range servers {
		list[i] = cty.StringVal(s)
	}
	args := map[string]cty.Value{"servers": cty.ListVal(list)}
	if min >= 0 {
		args["min_in_service"] = cty.NumberIntVal(min)
	}
	if max >= 0 {
		args["max_parallel"] = cty.NumberIntVal(max)
	}
	return args
}

// states is every server's status as HAProxy reports it, to show that
// preflight changed nothing.
func (l *lab) states(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range []string{"s1", "s2", "s3"} {
		out[s] = l.stat(t, s)["status"]
	}
	return out
}

func TestPreflightAgainstHAProxy(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, false)

	// Every server ready and up: the counts, and nothing changed.
	before := l.states(t)
	resp, _ := call(t, p, "preflight", preflightArgs(-1, -1, "s1", "s2", "s3"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(3),
	})), "%#v", resp.Result)
	assert.Equal(t, map[string]string{"s1": "UP", "s2": "UP", "s3": "UP"}, before)
	assert.Equal(t, before, l.states(t), "preflight changed nothing")
	resp, _ = call(t, p, "preflight", preflightArgs(1, 2, "s1", "s2", "s3"))
	require.NoError(t, resp.Diagnostics.Err(), "two at a time leave one of three")

	// s2 in maintenance, an unknown s9, and min_in_service 2 that draining
	// s1 would break (s1 and s3 in service): one error, all three.
	require.NoError(t, l.client.SetServerState(context.Background(), l.inst.Backend, "s2", runtimeapi.StateMaint))
	l.waitStatus(t, "s2", "MAINT")
	before = l.states(t)
	resp, _ = call(t, p, "preflight", preflightArgs(2, -1, "s1", "s2", "s9"))
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "preflight failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, "3 problem(s):\n"+
		`  - server "s2" is maint, not in rotation: enable it (or find out why it is out) before the run`+"\n"+
		`  - server "s9" is not in the backend (its servers: s1, s2, s3)`+"\n"+
		"  - 2 server(s) in service now: draining 1 at a time would leave 1, fewer than min_in_service = 2",
		resp.Diagnostics[0].Detail)
	assert.Equal(t, before, l.states(t), "preflight changed nothing")
	assert.Equal(t, "MAINT", before["s2"])

	// s3 down by its health check: in rotation, but not in service.
	l.backends["s3"].SetHealthy(false)
	l.waitStatus(t, "s3", "DOWN")
	resp, _ = call(t, p, "preflight", preflightArgs(0, -1, "s1", "s3"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "1 problem(s):\n"+`  - server "s3" is in rotation but its health check says down`, resp.Diagnostics[0].Detail)

	// Only s1 is in service now: a rollout over s1 alone cannot keep one.
	resp, _ = call(t, p, "preflight", preflightArgs(-1, -1, "s1"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "1 problem(s):\n  - 1 server(s) in service now: draining 1 at a time would leave 0, fewer than min_in_service = 1", resp.Diagnostics[0].Detail)
	assert.Equal(t, map[string]string{"s1": "UP", "s2": "MAINT", "s3": "DOWN"}, l.states(t), "preflight changed nothing")
}

func TestPreflightHAProxyDoesNotAnswer(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	missing := t.TempDir() + "/admin.sock"
	for name, tc := range map[string]struct {
		socket, backend, want string
	}{
		"wrong socket":  {missing, "app", "the load balancer does not answer: HAProxy admin socket " + missing + ": no such file or directory"},
		"wrong backend": {l.inst.Socket, "nope", `the load balancer does not answer: HAProxy at ` + l.inst.Socket + ` has no backend "nope" (backends: app)`},
	} {
		t.Run(name, func(t *testing.T) {
			p := sdktest.Provider(t, newPlugin())
			require.NoError(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{
				"socket": cty.StringVal(tc.socket), "backend": cty.StringVal(tc.backend),
				"state_file": cty.NullVal(cty.String), "timeout": cty.StringVal("2s"),
			})}).Err())
			resp, _ := call(t, p, "preflight", preflightArgs(-1, -1, "s1"))
			require.True(t, resp.Diagnostics.HasErrors())
			require.Len(t, resp.Diagnostics, 1)
			assert.Equal(t, tc.want, resp.Diagnostics[0].Detail)
		})
	}

	// HAProxy stopped: the socket it served does not answer.
	p := l.provider(t, false)
	resp, _ := call(t, p, "preflight", preflightArgs(-1, -1, "s1"))
	require.NoError(t, resp.Diagnostics.Err())
	require.NoError(t, l.inst.Stop())
	resp, _ = call(t, p, "preflight", preflightArgs(-1, -1, "s1"))
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Regexp(t, `^the load balancer does not answer: HAProxy admin socket `+regexp.QuoteMeta(l.inst.Socket)+`: (no such file or directory|connection refused)$`, resp.Diagnostics[0].Detail)
}
