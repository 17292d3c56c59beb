package main

import (
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

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

// nodeAttr is attribute attr of the pool's node i.
func nodeAttr(nodes cty.Value, i int, attr string) string {
	return nodes.Index(cty.NumberIntVal(int64(i))).GetAttr(attr).AsString()
}

// snapshot is what preflight must leave as it was: each node's config
// file, pid file and data folder listing.
func snapshot(t *testing.T, nodes cty.Value) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < nodes.LengthInt(); i++ {
		for _, attr := range []string{"config_file", "pid_file"} {
			b, err := os.ReadFile(nodeAttr(nodes, i, attr))
			if err != nil {
				out[nodeAttr(nodes, i, attr)] = err.Error()
				continue
			}
			out[nodeAttr(nodes, i, attr)] = string(b)
		}
		entries, _ := os.ReadDir(nodeAttr(nodes, i, "data_dir"))
		var names string
		for _, e := range entries {
			names += e.Name() + " "
		}
		out[nodeAttr(nodes, i, "data_dir")] = names
	}
	return out
}

// startByHand starts node i's platformd as an operator would, without the
// plugin (so without its pid file), and waits until it answers.
func startByHand(t *testing.T, nodes cty.Value, addr string, i int) {
	t.Helper()
	cmd := exec.Command(platformd, "serve", "--config", nodeAttr(nodes, i, "config_file"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "the node started by hand never answered")
}

// TestPreflightAgainstPlatformd: two real platformd nodes started by the
// plugin pass with their versions; a wrong version, a target they already
// run, a name not in the pool, a node stopped, one started by hand (no pid
// file) and an unreadable config are each reported, every one at once,
// and preflight changes nothing.
func TestPreflightAgainstPlatformd(t *testing.T) {
	nodes, addrs, _ := pool(t, "1", "1")
	p := provider(t, nodes)
	for _, n := range []string{"node-1", "node-2"} {
		ok(t, call(p, "start", map[string]cty.Value{"node": node(n)}))
		ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node(n), "timeout": cty.StringVal("20s")}))
	}
	before := snapshot(t, nodes)

	res := ok(t, preflight(p, "", "", "node-1", "node-2"))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"versions": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("1"), "node-2": cty.StringVal("1")}),
	})), "%#v", res)
	ok(t, preflight(p, "1", "2", "node-1", "node-2"))

	problems := func(r plugins.InvokeResponse) string {
		t.Helper()
		require.True(t, r.Diagnostics.HasErrors())
		require.Len(t, r.Diagnostics, 1)
		assert.Equal(t, "preflight failed", r.Diagnostics[0].Summary)
		return r.Diagnostics[0].Detail
	}
	assert.Equal(t, "3 problem(s):\n"+
		"  - node node-1: runs version 1, not 2\n"+
		"  - node node-9: not in this pool\n"+
		"  - node node-2: runs version 1, not 2",
		problems(preflight(p, "2", "", "node-1", "node-9", "node-2")))
	assert.Equal(t, "2 problem(s):\n"+
		"  - node node-1: already runs version 1, the version this run upgrades to\n"+
		"  - node node-2: already runs version 1, the version this run upgrades to",
		problems(preflight(p, "", "1", "node-1", "node-2")))
	assert.Equal(t, before, snapshot(t, nodes), "preflight changed nothing")

	// node-2 stopped: its pid file names no process, and it does not
	// answer; node-1 is fine, and still reported with the rest.
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-2")}))
	pid2 := nodeAttr(nodes, 1, "pid_file")
	assert.Equal(t, "3 problem(s):\n"+
		`  - node node-2: its process is not running as the plugin knows it (pid file "`+pid2+`"): a node started by hand needs its pid written there, or stop and start cannot manage it`+"\n"+
		"  - node node-2: health check http://"+addrs[1]+"/healthz does not answer: dial tcp "+addrs[1]+": connect: connection refused\n"+
		"  - node node-9: not in this pool",
		problems(preflight(p, "1", "", "node-1", "node-2", "node-9")))

	// node-2 started by hand: it answers, on version 1, but the plugin has
	// no pid for it.
	if err := os.Remove(pid2); err != nil {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	startByHand(t, nodes, addrs[1], 1)
	assert.Equal(t, "1 problem(s):\n"+
		`  - node node-2: its process is not running as the plugin knows it (pid file "`+pid2+`"): a node started by hand needs its pid written there, or stop and start cannot manage it`,
		problems(preflight(p, "1", "", "node-1", "node-2")))
	assert.NoFileExists(t, pid2, "preflight wrote no pid file")

	// node-1's config file is not JSON any more.
	cfg1 := nodeAttr(nodes, 0, "config_file")
	good, err := os.ReadFile(cfg1)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg1, []byte("version = 1\n"), 0o644))
	assert.Equal(t, "1 problem(s):\n"+
		"  - node node-1: config file cannot be read: config file "+cfg1+": not a JSON object: invalid character 'v' looking for beginning of value",
		problems(preflight(p, "1", "", "node-1")))
	require.NoError(t, os.Remove(cfg1))
	assert.Equal(t, "1 problem(s):\n"+
		"  - node node-1: config file cannot be read: open "+cfg1+": no such file or directory",
		problems(preflight(p, "1", "", "node-1")))
	require.NoError(t, os.WriteFile(cfg1, good, 0o644))
	res = ok(t, preflight(p, "1", "2", "node-1"))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"versions": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("1")}),
	})), "%#v", res)
}
