package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
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

func TestPreflightAgainstNginx(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)
	master := l.inst.MasterPID()
	workers := nginxctl.Workers(master)
	require.NotEmpty(t, workers)

	// Every server ready and answering its health URL: the counts; the
	// upstream file untouched and nginx not reloaded.
	text := l.upstream(t)
	resp, _ := call(t, p, "preflight", preflightArgs(-1, -1, "node-1", "node-2", "node-3"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(3),
	})), "%#v", resp.Result)
	assert.Equal(t, text, l.upstream(t), "preflight changed nothing")
	assert.Equal(t, workers, nginxctl.Workers(master), "nginx was not reloaded")

	// node-2 out of rotation (drained), an unknown node-9, and
	// min_in_service 2 that draining node-1 would break: one error, all
	// three.
	resp, _ = call(t, p, "drain", args("node-2", "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	require.Equal(t, []string{"node-2"}, l.downServers(t))
	text = l.upstream(t)
	workers = nginxctl.Workers(master)
	resp, _ = call(t, p, "preflight", preflightArgs(2, -1, "node-1", "node-2", "node-9"))
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "preflight failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, "3 problem(s):\n"+
		`  - server "node-2" is maint, not in rotation: enable it (or find out why it is out) before the run`+"\n"+
		`  - server "node-9" is not in the backend (its servers: node-1, node-2, node-3)`+"\n"+
		"  - 2 server(s) in service now: draining 1 at a time would leave 1, fewer than min_in_service = 2",
		resp.Diagnostics[0].Detail)
	assert.Equal(t, text, l.upstream(t), "preflight changed nothing")
	assert.Equal(t, workers, nginxctl.Workers(master), "nginx was not reloaded")

	// node-3 fails its health URL: in rotation, not in service.
	l.backends["node-3"].SetHealthy(false)
	resp, _ = call(t, p, "preflight", preflightArgs(0, -1, "node-1", "node-3"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "1 problem(s):\n"+`  - server "node-3" is in rotation but its health check says down`, resp.Diagnostics[0].Detail)

	// Without health URLs nginx cannot tell health: a server in rotation
	// counts as in service.
	noHealth := l.provider(t, map[string]cty.Value{"health_urls": cty.NullVal(cty.Map(cty.String))})
	resp, _ = call(t, noHealth, "preflight", preflightArgs(-1, -1, "node-1", "node-3"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(2),
	})), "%#v", resp.Result)
}

func TestPreflightNginxDoesNotAnswer(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	missing := t.TempDir() + "/upstream.conf"
	p := l.provider(t, map[string]cty.Value{"upstream_file": cty.StringVal(missing)})
	resp, _ := call(t, p, "preflight", preflightArgs(-1, -1, "node-1"))
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "the load balancer does not answer: upstream file "+missing+": no such file or directory", resp.Diagnostics[0].Detail)

	p = l.provider(t, map[string]cty.Value{"upstream": cty.StringVal("nope")})
	resp, _ = call(t, p, "preflight", preflightArgs(-1, -1, "node-1"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "the load balancer does not answer: upstream file "+l.inst.Upstream+" has no upstream nope (it has: app)", resp.Diagnostics[0].Detail)

	// nginx not running (its pid file names no process): the upstream file
	// and the servers answer, nginx does not, and the first drain would
	// fail, so preflight says so now.
	gone := t.TempDir() + "/nginx.pid"
	p = l.provider(t, map[string]cty.Value{"pid_file": cty.StringVal(gone)})
	resp, _ = call(t, p, "preflight", preflightArgs(-1, -1, "node-1"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.True(t, strings.HasPrefix(resp.Diagnostics[0].Detail, "the load balancer does not answer: "), resp.Diagnostics[0].Detail)
	assert.Contains(t, resp.Diagnostics[0].Detail, gone)
}
