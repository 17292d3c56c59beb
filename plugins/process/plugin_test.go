package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

var platformd string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "process-plugin-")
	if err != nil {
		panic(err)
	}
	platformd = filepath.Join(dir, "platformd")
	if out, err := exec.Command("go", "build", "-o", platformd, "../../cmd/platformd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building platformd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// pool writes platformd configs for n nodes sharing one SQLite file and
// returns the nodes value the playbook would pass, plus their addresses.
func pool(t *testing.T, versions ...string) (cty.Value, []string, string) {
	dir := t.TempDir()
	db := filepath.Join(dir, "a.sqlite")
	var addrs []string
	for range versions {
		addrs = append(addrs, freeAddr(t))
	}
	var nodes []cty.Value
	for i, v := range versions {
		name := fmt.Sprintf("node-%d", i+1)
		nd := filepath.Join(dir, name)
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, "http://"+a)
			}
		}
		cfg, _ := json.Marshal(map[string]any{"name": name, "listen": addrs[i], "version": v, "processing": i == 0,
			"data_dir": filepath.Join(nd, "data"), "db.driver": "sqlite", "db.dsn": db, "peers": peers})
		require.NoError(t, os.MkdirAll(filepath.Join(nd, "data"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(nd, "config.json"), cfg, 0o644))
		nodes = append(nodes, cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(name), "address": cty.StringVal(addrs[i]),
			"config_file": cty.StringVal(filepath.Join(nd, "config.json")), "data_dir": cty.StringVal(filepath.Join(nd, "data")),
			"command":  cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("serve"), cty.StringVal("--config"), cty.StringVal(filepath.Join(nd, "config.json"))}),
			"pid_file": cty.StringVal(filepath.Join(nd, "pid")), "log_file": cty.StringVal(filepath.Join(nd, "log")),
		}))
	}
	return cty.TupleVal(nodes), addrs, dir
}

func provider(t *testing.T, nodes cty.Value) plugins.Provider {
	p := sdktest.Provider(t, newPlugin())
	cfg := cty.ObjectVal(map[string]cty.Value{"read_only_path": cty.NullVal(cty.String), "start_timeout": cty.StringVal("20s"), "stop_timeout": cty.StringVal("10s")})
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: nodes})
	require.False(t, d.HasErrors(), d.Err())
	// No node outlives its test.
	t.Cleanup(func() {
		for it := nodes.ElementIterator(); it.Next(); {
			_, n := it.Element()
			call(p, "stop", map[string]cty.Value{"node": n.GetAttr("name"), "timeout": cty.StringVal("5s")})
		}
	})
	return p
}

// call invokes an action, filling the optional arguments it was not given.
func call(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	sch, _ := p.Schema(context.Background())
	for _, a := range sch.Actions[action].Args.Attributes {
		if _, ok := args[a.Name]; !ok {
			args[a.Name] = cty.NullVal(a.Type)
		}
	}
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
}

func ok(t *testing.T, r plugins.InvokeResponse) cty.Value {
	t.Helper()
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	return r.Result
}

func node(n string) cty.Value { return cty.StringVal(n) }

func TestNodeLifecycleAgainstPlatformd(t *testing.T) {
	nodes, addrs, _ := pool(t, "1")
	p := provider(t, nodes)
	n1 := map[string]cty.Value{"node": node("node-1")}
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	res := ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("20s")}))
	assert.Equal(t, "1", res.GetAttr("version").AsString())
	ok(t, call(p, "start", n1)) // idempotent

	// Read-only: writes refused cleanly.
	ok(t, call(p, "read_only", map[string]cty.Value{"node": node("node-1"), "enabled": cty.True}))
	resp, err := http.Post("http://"+addrs[0]+"/items", "application/json", strings.NewReader(`{"value":"x"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-Upshift-Read-Only"))

	// A request in flight when the node is stopped still completes.
	slow := make(chan int, 1)
	go func() {
		r, err := http.Get("http://" + addrs[0] + "/slow?ms=700")
		if err != nil {
			slow <- 0
			return
		}
		r.Body.Close()
		slow <- r.StatusCode
	}()
	time.Sleep(200 * time.Millisecond)
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")}))
	assert.Equal(t, http.StatusOK, <-slow)
	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "stop", Args: cty.ObjectVal(map[string]cty.Value{"node": node("node-1"), "timeout": cty.NullVal(cty.String)})})
	assert.Equal(t, plugins.CheckApplied, chk.State)
	_, err = net.DialTimeout("tcp", addrs[0], time.Second)
	assert.Error(t, err, "nothing listens after stop")
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")})) // idempotent

	// set_config keeps the other keys; touch stays in the data folder.
	// The config holds the database's credentials: private, and owned by
	// the service's user, which set_config keeps.
	cfgPath := nodes.Index(cty.NumberIntVal(0)).GetAttr("config_file").AsString()
	require.NoError(t, os.Chmod(cfgPath, 0o600))
	owner := os.Getuid()
	if owner == 0 {
		owner = 65534
		require.NoError(t, os.Chown(cfgPath, owner, owner))
	}
	res = ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("version"), "value": cty.StringVal("2")}))
	assert.True(t, res.GetAttr("changed").True())
	st, err := os.Stat(cfgPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "mode kept")
	assert.Equal(t, uint32(owner), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	res = ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("version"), "value": cty.StringVal("2")}))
	assert.False(t, res.GetAttr("changed").True())
	var cfg map[string]any
	b, _ := os.ReadFile(cfgPath)
	require.NoError(t, json.Unmarshal(b, &cfg))
	assert.Equal(t, "2", cfg["version"])
	assert.Equal(t, "node-1", cfg["name"])
	bad := call(p, "touch", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal("../escape")})
	require.True(t, bad.Diagnostics.HasErrors())
	assert.Equal(t, "path", bad.Diagnostics[0].Attribute)

	// The platform's migration through exec, then its refusal to run twice.
	migrate := cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("migrate"), cty.StringVal("--config"), cty.StringVal(cfgPath)})
	res = ok(t, call(p, "exec", map[string]cty.Value{"node": node("node-1"), "command": migrate}))
	assert.Contains(t, res.GetAttr("stdout").AsString(), "migrated to version 2")
	again := call(p, "exec", map[string]cty.Value{"node": node("node-1"), "command": migrate})
	require.True(t, again.Diagnostics.HasErrors())
	assert.Contains(t, again.Diagnostics.Err().Error(), "node node-1: command exited with status 3")
	assert.Contains(t, again.Diagnostics.Err().Error(), "already migrated")

	ok(t, call(p, "touch", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal("rolling-upgrade")}))
	ok(t, call(p, "start", n1))
	res = ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("20s")}))
	assert.Equal(t, "2", res.GetAttr("version").AsString())

	dest := filepath.Join(t.TempDir(), "backup")
	res = ok(t, call(p, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(dest)}))
	_, err = os.Stat(filepath.Join(dest, "rolling-upgrade"))
	assert.NoError(t, err)
	_, err = os.Stat(filepath.Join(dest, "VERSION"))
	assert.NoError(t, err)
}

func TestStartQuotesWhyTheNodeExited(t *testing.T) {
	nodes, _, dir := pool(t, "1", "1")
	p := provider(t, nodes)
	for _, n := range []string{"node-1", "node-2"} {
		ok(t, call(p, "start", map[string]cty.Value{"node": node(n)}))
		ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node(n), "timeout": cty.StringVal("20s")}))
	}
	// node-2 is upgraded on its own database B, as the playbook does, but
	// without the rolling-upgrade marker, next to node-1 still on version 1.
	set := func(key, value string) {
		ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-2"), "key": cty.StringVal(key), "value": cty.StringVal(value)}))
	}
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-2")}))
	set("db.dsn", filepath.Join(dir, "b.sqlite"))
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-2")})) // creates B on version 1
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-2"), "timeout": cty.StringVal("20s")}))
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-2")}))
	set("version", "2")
	cfg := nodes.Index(cty.NumberIntVal(1)).GetAttr("config_file")
	ok(t, call(p, "exec", map[string]cty.Value{"node": node("node-2"), "command": cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("migrate"), cty.StringVal("--config"), cfg})}))

	r := call(p, "start", map[string]cty.Value{"node": node("node-2")})
	require.True(t, r.Diagnostics.HasErrors())
	msg := r.Diagnostics.Err().Error()
	assert.Contains(t, msg, "node node-2: the process exited at start")
	assert.Contains(t, msg, "rolling-upgrade", "the platform's own reason is quoted")

	ok(t, call(p, "touch", map[string]cty.Value{"node": node("node-2"), "path": cty.StringVal("rolling-upgrade")}))
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-2")}))
	res := ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-2"), "timeout": cty.StringVal("20s")}))
	assert.Equal(t, "2", res.GetAttr("version").AsString(), "with the marker it runs next to version 1")
}

func TestConfigureNamesTheNodeAndWhatIsMissing(t *testing.T) {
	p := sdktest.Provider(t, newPlugin())
	cfg := cty.ObjectVal(map[string]cty.Value{"read_only_path": cty.NullVal(cty.String), "start_timeout": cty.NullVal(cty.String), "stop_timeout": cty.NullVal(cty.String)})
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("web-1"), "address": cty.StringVal("127.0.0.1:1")})})})
	require.True(t, d.HasErrors())
	assert.Contains(t, d.Err().Error(), `node "web-1" has no`)
	r := call(p, "start", map[string]cty.Value{"node": node("nope")})
	require.True(t, r.Diagnostics.HasErrors())
}
