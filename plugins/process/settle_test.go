package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

func strs(ss ...string) cty.Value {
	var vs []cty.Value
	for _, s := range ss {
		vs = append(vs, cty.StringVal(s))
	}
	return cty.ListVal(vs)
}

// check asks the plugin's Check of exec, as the runner does on resume.
func check(t *testing.T, p plugins.Provider, args map[string]cty.Value) plugins.CheckResponse {
	t.Helper()
	sch, _ := p.Schema(context.Background())
	for _, a := range sch.Actions["exec"].Args.Attributes {
		if _, ok := args[a.Name]; !ok {
			args[a.Name] = cty.NullVal(a.Type)
		}
	}
	return p.Check(context.Background(), plugins.InvokeRequest{Action: "exec", Args: cty.ObjectVal(args)})
}

// TestExecCheckSettlesAMigration: the shipped playbook's migrate step with
// `check = [..., "--check"]`, asked before and after the migration.
func TestExecCheckSettlesAMigration(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	p := provider(t, nodes)
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("20s")}))
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")}))
	cfg := nodes.Index(cty.NumberIntVal(0)).GetAttr("config_file").AsString()
	ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("version"), "value": cty.StringVal("2")}))
	migrate := map[string]cty.Value{
		"node":    node("node-1"),
		"command": strs(platformd, "migrate", "--config", cfg),
		"check":   strs(platformd, "migrate", "--config", cfg, "--check"),
	}

	c := check(t, p, migrate)
	assert.Equal(t, plugins.CheckNotApplied, c.State, c.Detail)
	assert.Contains(t, c.Detail, "exited 1: not done")

	ok(t, call(p, "exec", migrate))
	c = check(t, p, migrate)
	require.Equal(t, plugins.CheckApplied, c.State, c.Detail)
	assert.Equal(t, "migrated to version 2\n", c.Result.GetAttr("stdout").AsString())
	assert.True(t, c.Result.GetAttr("exit_code").RawEquals(cty.NumberIntVal(0)))

	// Anything else is unknown: the runner stops and asks the operator.
	c = check(t, p, map[string]cty.Value{"node": node("node-1"), "command": migrate["command"], "check": strs("sh", "-c", "echo cannot reach the database >&2; exit 6")})
	assert.Equal(t, plugins.CheckUnknown, c.State)
	assert.Contains(t, c.Detail, "cannot reach the database")
	c = check(t, p, map[string]cty.Value{"node": node("node-1"), "command": migrate["command"]})
	assert.Equal(t, plugins.CheckUnknown, c.State)
	assert.Contains(t, c.Detail, "no check command")
	c = check(t, p, map[string]cty.Value{"node": node("node-1"), "command": migrate["command"], "check": strs("/no/such/check")})
	assert.Equal(t, plugins.CheckUnknown, c.State, "a missing program (127) is not a no")
	// The check sees the step's environment.
	c = check(t, p, map[string]cty.Value{"node": node("node-1"), "command": migrate["command"], "env": cty.MapVal(map[string]cty.Value{"DONE": cty.StringVal("1")}),
		"check": strs("sh", "-c", `test "$DONE" = 1`)})
	assert.Equal(t, plugins.CheckApplied, c.State, c.Detail)
}

// TestStartRefusesAStrayOnThePort: whatever already answers on a node's
// address, start fails naming it and leaves nothing of its own running.
func TestStartRefusesAStrayOnThePort(t *testing.T) {
	nodes, addrs, _ := pool(t, "1")
	p := provider(t, nodes)
	pidFile := nodes.Index(cty.NumberIntVal(0)).GetAttr("pid_file").AsString()

	// A bare listener in this very process.
	ln, err := net.Listen("tcp", addrs[0])
	require.NoError(t, err)
	r := call(p, "start", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("10s")})
	ln.Close()
	require.True(t, r.Diagnostics.HasErrors(), "start must not succeed on another process's answer")
	msg := r.Diagnostics.Err().Error()
	t.Logf("a bare listener: %s", msg)
	assert.Contains(t, msg, addrs[0]+" is held by pid "+strconv.Itoa(os.Getpid()))
	_, err = os.Stat(pidFile)
	assert.True(t, os.IsNotExist(err), "no pid file left for the next start to trust")

	// A stray platformd of the same node, started by hand without a pid
	// file: healthy, answering as the node, but not what start started.
	cfg := nodes.Index(cty.NumberIntVal(0)).GetAttr("config_file").AsString()
	stray := exec.Command(platformd, "serve", "--config", cfg)
	require.NoError(t, stray.Start())
	t.Cleanup(func() { _ = stray.Process.Kill(); _ = stray.Wait() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addrs[0] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)
	r = call(p, "start", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("10s")})
	require.True(t, r.Diagnostics.HasErrors())
	msg = r.Diagnostics.Err().Error()
	t.Logf("a stray platformd: %s", msg)
	assert.Contains(t, msg, "pid "+strconv.Itoa(stray.Process.Pid), "names what answers: %s", msg)
	assert.Contains(t, msg, addrs[0])
	_, err = os.Stat(pidFile)
	assert.True(t, os.IsNotExist(err))
	assert.Nil(t, stray.ProcessState, "the stray is not start's to stop")
}

// TestStartTakesAWrapperForTheNode: a command that forks the server (a
// wrapper script) is the process started too: what answers descends from
// it.
func TestStartTakesAWrapperForTheNode(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	n := nodes.Index(cty.NumberIntVal(0))
	attrs := n.AsValueMap()
	attrs["command"] = strs("sh", "-c", `"$0" serve --config "$1"; echo the node ended`, platformd, n.GetAttr("config_file").AsString())
	nodes = cty.TupleVal([]cty.Value{cty.ObjectVal(attrs)})
	p := provider(t, nodes)
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("20s"), "writable": cty.True}))

	// stop takes the wrapped server with the wrapper: none outlives it.
	resp, err := http.Get("http://" + n.GetAttr("address").AsString() + "/healthz")
	require.NoError(t, err)
	var h struct{ Pid int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	resp.Body.Close()
	require.NotZero(t, h.Pid)
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")}))
	assert.False(t, procfs.Alive(h.Pid), "the server the wrapper started is stopped too")
}

// TestWaitHealthyVersionAndWritable: a healthy node on another version, or
// read-only, does not count when the step asks for them.
func TestWaitHealthyVersionAndWritable(t *testing.T) {
	nodes, addrs, _ := pool(t, "1")
	p := provider(t, nodes)
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	wait := func(extra map[string]cty.Value) plugins.InvokeResponse {
		args := map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("1s"), "successes": cty.NumberIntVal(2)}
		for k, v := range extra {
			args[k] = v
		}
		return call(p, "wait_healthy", args)
	}
	res := ok(t, wait(map[string]cty.Value{"version": cty.StringVal("1"), "writable": cty.True}))
	assert.Equal(t, "1", res.GetAttr("version").AsString())
	r := wait(map[string]cty.Value{"version": cty.StringVal("2")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), `healthy but on version "1", not "2"`)

	ok(t, call(p, "read_only", map[string]cty.Value{"node": node("node-1"), "enabled": cty.True}))
	ok(t, wait(map[string]cty.Value{"version": cty.StringVal("1")}))
	r = wait(map[string]cty.Value{"writable": cty.True})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "healthy but read-only")

	// The node's own answer says which process it is.
	resp, err := http.Get("http://" + addrs[0] + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var h struct{ Pid int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	pidFile := nodes.Index(cty.NumberIntVal(0)).GetAttr("pid_file").AsString()
	b, _ := os.ReadFile(filepath.Clean(pidFile))
	assert.Equal(t, strconv.Itoa(h.Pid)+"\n", string(b))
}
