package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
)

func preflight(p plugins.Provider, version, target string, names ...string) plugins.InvokeResponse {
	list := make([]cty.Value, len(names))
	for i, n := range names {
		list[i] = cty.StringVal(n)
	}
	s := func(v string) cty.Value {
		if v == "" {
			return cty.NullVal(cty.String)
		}
		return cty.StringVal(v)
	}
	return call(p, "preflight", map[string]cty.Value{"nodes": cty.ListVal(list), "version": s(version), "target": s(target)})
}

// TestPreflightOverSSH: a platformd node started over SSH passes with its
// version; wrong version, target already run, unknown node, a stopped node
// (its pid file named) and an unreadable config are reported, all at once,
// and nothing changes.
func TestPreflightOverSSH(t *testing.T) {
	p, ns, addr, cfgPath := sshPool(t)
	n := cty.StringVal("node-1")
	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	pidFile := ns.Index(cty.NumberIntVal(0)).GetAttr("pid_file").AsString()
	pid, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	cfg, err := os.ReadFile(cfgPath)
	require.NoError(t, err)

	res := ok(t, preflight(p, "1", "2", "node-1"))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"versions": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("1")}),
	})), "%#v", res)

	problems := func(r plugins.InvokeResponse) string {
		t.Helper()
		require.True(t, r.Diagnostics.HasErrors())
		require.Len(t, r.Diagnostics, 1)
		return r.Diagnostics[0].Detail
	}
	assert.Equal(t, "2 problem(s):\n  - node node-1: runs version 1, not 2\n  - node node-2: not in this pool",
		problems(preflight(p, "2", "", "node-1", "node-2")))
	assert.Equal(t, "1 problem(s):\n  - node node-1: already runs version 1, the version this run upgrades to",
		problems(preflight(p, "", "1", "node-1")))
	after, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	assert.Equal(t, string(pid), string(after), "preflight left the pid file")
	after, err = os.ReadFile(cfgPath)
	require.NoError(t, err)
	assert.Equal(t, string(cfg), string(after), "preflight left the config")

	// Stopped: the pid file names no process, the node does not answer.
	ok(t, call(p, "stop", map[string]cty.Value{"node": n}))
	assert.Equal(t, "2 problem(s):\n"+
		`  - node node-1: its process is not running as the plugin knows it (pid file "`+pidFile+`"): a node started by hand needs its pid written there, or stop and start cannot manage it`+"\n"+
		"  - node node-1: health check http://"+addr+"/healthz does not answer: dial tcp "+addr+": connect: connection refused",
		problems(preflight(p, "1", "", "node-1")))

	// The config is not JSON: read over SFTP, and said so.
	require.NoError(t, os.WriteFile(cfgPath, []byte("version = 1\n"), 0o644))
	msg := problems(preflight(p, "", "", "node-1"))
	assert.Contains(t, msg, "3 problem(s):\n  - node node-1: config file cannot be read: "+cfgPath+": not a JSON object: invalid character 'v' looking for beginning of value\n")
}
