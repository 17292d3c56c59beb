package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

func nodes(names ...string) cty.Value {
	var vs []cty.Value
	for _, n := range names {
		vs = append(vs, cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(n), "version": cty.StringVal("X+1")}))
	}
	return cty.TupleVal(vs)
}

// kitProvider serves a fresh testkit over in-process gRPC, configured with
// stateDir ("" for none) and nodes a and b. exits records crash's exit codes.
func kitProvider(t *testing.T, stateDir string) (plugins.Provider, *[]int) {
	t.Helper()
	var exits []int
	k := newKit(func(code int) { exits = append(exits, code) })
	p := sdktest.Provider(t, k.plugin())
	cfg := cty.NullVal(cty.String)
	if stateDir != "" {
		cfg = cty.StringVal(stateDir)
	}
	d := p.Configure(context.Background(), plugins.ConfigureRequest{
		Config: cty.ObjectVal(map[string]cty.Value{"state_dir": cfg}),
		Nodes:  nodes("a", "b"),
	})
	require.False(t, d.HasErrors(), "%v", d.Err())
	return p, &exits
}

func invoke(t *testing.T, p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	t.Helper()
	v := cty.EmptyObjectVal
	if len(args) > 0 {
		v = cty.ObjectVal(args)
	}
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: v})
}

func ok(t *testing.T, resp plugins.InvokeResponse) cty.Value {
	t.Helper()
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	return resp.Result
}

var s = cty.StringVal

func TestNoop(t *testing.T) {
	p, _ := kitProvider(t, "")
	assert.True(t, ok(t, invoke(t, p, "noop", nil)).GetAttr("ok").True())
}

func TestSleep(t *testing.T) {
	dir := t.TempDir()
	p, _ := kitProvider(t, dir)
	var lines []string
	start := time.Now()
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "sleep",
		Args: cty.ObjectVal(map[string]cty.Value{"duration": s("50ms"), "key": cty.NullVal(cty.String)}), Progress: func(l string) { lines = append(lines, l) }})
	assert.Equal(t, "50ms", ok(t, resp).GetAttr("slept").AsString())
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	assert.Equal(t, []string{"sleeping 50ms"}, lines)

	// Cancelled: returns early and leaves its marker.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "sleep", Args: cty.ObjectVal(map[string]cty.Value{"duration": s("1m"), "key": s("k1")})})
	require.True(t, resp.Diagnostics.HasErrors())
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "cancelled-k1"))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)

	resp = invoke(t, p, "sleep", map[string]cty.Value{"duration": s("soon")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "duration", resp.Diagnostics[0].Attribute)
}

func TestFlakySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	p, _ := kitProvider(t, dir)
	args := map[string]cty.Value{"key": s("k"), "failures": cty.NumberIntVal(2)}
	resp := invoke(t, p, "flaky", args)
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics[0].Detail, "failing on purpose (call 1, 2 to fail)")

	// A new instance (a restarted plugin) carries on from the count on disk.
	p2, _ := kitProvider(t, dir)
	require.True(t, invoke(t, p2, "flaky", args).Diagnostics.HasErrors())
	assert.Equal(t, int64(3), bigInt(ok(t, invoke(t, p2, "flaky", args)).GetAttr("attempts")))
	assert.Equal(t, int64(4), bigInt(ok(t, invoke(t, p2, "flaky", args)).GetAttr("attempts")))
	// Another key has its own count.
	assert.Equal(t, int64(1), bigInt(ok(t, invoke(t, p2, "flaky", map[string]cty.Value{"key": s("other"), "failures": cty.NumberIntVal(0)})).GetAttr("attempts")))

	resp = invoke(t, p2, "flaky", map[string]cty.Value{"key": s("../x"), "failures": cty.NumberIntVal(0)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "key", resp.Diagnostics[0].Attribute)

	pNoDir, _ := kitProvider(t, "")
	resp = invoke(t, pNoDir, "flaky", args)
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics[0].Detail, "needs state_dir")
}

func bigInt(v cty.Value) int64 {
	i, _ := v.AsBigFloat().Int64()
	return i
}

func TestFail(t *testing.T) {
	p, _ := kitProvider(t, "")
	resp := invoke(t, p, "fail", map[string]cty.Value{"message": s("no luck")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "fail failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, "no luck", resp.Diagnostics[0].Detail)
	assert.Empty(t, resp.Diagnostics[0].Attribute)

	resp = invoke(t, p, "fail", map[string]cty.Value{"message": s("too big"), "attribute": s("message")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "message", resp.Diagnostics[0].Attribute)
	assert.Equal(t, "too big", resp.Diagnostics[0].Detail)
}

func TestCrashCallsExit(t *testing.T) {
	p, exits := kitProvider(t, "")
	resp := invoke(t, p, "crash", map[string]cty.Value{"after": s("1ms")})
	// In process the exit is faked, so the call carries on to an error.
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, []int{2}, *exits)
}

func TestRecordAndCheck(t *testing.T) {
	dir := t.TempDir()
	p, _ := kitProvider(t, dir)
	args := cty.ObjectVal(map[string]cty.Value{"key": s("step.one")})
	cr := p.Check(context.Background(), plugins.InvokeRequest{Action: "record", Args: args})
	require.False(t, cr.Diagnostics.HasErrors(), "%v", cr.Diagnostics.Err())
	assert.Equal(t, plugins.CheckNotApplied, cr.State)

	res := ok(t, invoke(t, p, "record", map[string]cty.Value{"key": s("step.one")}))
	assert.Equal(t, int64(1), bigInt(res.GetAttr("count")))
	ok(t, invoke(t, p, "record", map[string]cty.Value{"key": s("step.two")}))
	res = ok(t, invoke(t, p, "record", map[string]cty.Value{"key": s("step.one")}))
	assert.Equal(t, int64(2), bigInt(res.GetAttr("count")))

	cr = p.Check(context.Background(), plugins.InvokeRequest{Action: "record", Args: args})
	assert.Equal(t, plugins.CheckApplied, cr.State)
	assert.Equal(t, "step.one", cr.Result.GetAttr("key").AsString())
	assert.Equal(t, int64(2), bigInt(cr.Result.GetAttr("count")))

	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	require.NoError(t, err)
	assert.Equal(t, "step.one 1\nstep.two 1\nstep.one 2\n", string(b))

	sp, err := p.Schema(context.Background())
	require.NoError(t, err)
	assert.False(t, sp.Action("record").Idempotent)
}

func TestEcho(t *testing.T) {
	p, _ := kitProvider(t, "")
	res := ok(t, invoke(t, p, "echo", map[string]cty.Value{"value": s("v"), "secret": s("hunter2")}))
	assert.Equal(t, "v", res.GetAttr("value").AsString())
	assert.Equal(t, "hunter2", res.GetAttr("secret").AsString())
	res = ok(t, invoke(t, p, "echo", map[string]cty.Value{"value": s("v")}))
	assert.True(t, res.GetAttr("secret").IsNull())

	sp, err := p.Schema(context.Background())
	require.NoError(t, err)
	assert.True(t, sp.Action("echo").Args.Attribute("secret").Sensitive)
	assert.True(t, sp.Action("echo").Result.Attribute("secret").Sensitive)
}

func TestNodePoolContract(t *testing.T) {
	dir := t.TempDir()
	p, _ := kitProvider(t, dir)
	node := map[string]cty.Value{"node": s("a")}
	with := func(extra map[string]cty.Value) map[string]cty.Value {
		m := map[string]cty.Value{"node": s("a")}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	assert.Equal(t, "a", ok(t, invoke(t, p, "start", node)).GetAttr("node").AsString())
	assert.Equal(t, "a", ok(t, invoke(t, p, "stop", with(map[string]cty.Value{"timeout": s("5s")}))).GetAttr("node").AsString())

	res := ok(t, invoke(t, p, "exec", with(map[string]cty.Value{"command": cty.ListVal([]cty.Value{s("platformd"), s("migrate")})})))
	assert.Equal(t, "platformd migrate\n", res.GetAttr("stdout").AsString())
	assert.Equal(t, int64(0), bigInt(res.GetAttr("exit_code")))
	resp := invoke(t, p, "exec", node)
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "command", resp.Diagnostics[0].Attribute)

	cfg := with(map[string]cty.Value{"key": s("db.name"), "value": s("b")})
	assert.True(t, ok(t, invoke(t, p, "set_config", cfg)).GetAttr("changed").True())
	assert.False(t, ok(t, invoke(t, p, "set_config", cfg)).GetAttr("changed").True())

	path := ok(t, invoke(t, p, "touch", with(map[string]cty.Value{"path": s("rolling-upgrade")}))).GetAttr("path").AsString()
	assert.Equal(t, filepath.Join(dir, "nodes", "a", "rolling-upgrade"), path)
	assert.FileExists(t, path)
	resp = invoke(t, p, "touch", with(map[string]cty.Value{"path": s("../../escape")}))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "path", resp.Diagnostics[0].Attribute)

	assert.True(t, ok(t, invoke(t, p, "read_only", with(map[string]cty.Value{"enabled": cty.True}))).GetAttr("enabled").True())
	assert.Equal(t, "X+1", ok(t, invoke(t, p, "wait_healthy", node)).GetAttr("version").AsString())
	assert.Equal(t, "/backups/a", ok(t, invoke(t, p, "backup_data", with(map[string]cty.Value{"to": s("/backups/a")}))).GetAttr("path").AsString())

	resp = invoke(t, p, "start", map[string]cty.Value{"node": s("zz")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "node", resp.Diagnostics[0].Attribute)
	assert.Contains(t, resp.Diagnostics[0].Detail, `no node "zz" in the pool (nodes: a, b)`)
}

func TestConfigureNeedsNodes(t *testing.T) {
	k := newKit(func(int) {})
	p := sdktest.Provider(t, k.plugin())
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal})
	require.True(t, d.HasErrors())
	assert.Equal(t, "nodes", d[0].Attribute)
	d = p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: nodes("a", "a")})
	require.True(t, d.HasErrors())
	assert.True(t, strings.Contains(d[0].Detail, `"a" appears twice`), d[0].Detail)
}
