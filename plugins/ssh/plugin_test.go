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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

var platformd string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ssh-plugin-")
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

func TestQuoting(t *testing.T) {
	srv := sshd.Start(t)
	h := newHost("root", srv.Addr, &sshConfig{knownHosts: srv.KnownHosts, timeout: 10e9}, 8)
	auth, err := authMethods(srv.ClientKey, "")
	require.NoError(t, err)
	h.cfg.auth = auth
	defer h.close()
	args := []string{"it's", "two words", "$HOME", "`id`", "a\nnewline", `back\slash`, "", "*"}
	out, _, err := h.run(context.Background(), commandLine(append([]string{"printf", "[%s]"}, args...)), 10e9)
	require.NoError(t, err)
	want := ""
	for _, a := range args {
		want += "[" + a + "]"
	}
	assert.Equal(t, want, out, "every argument arrives exactly as given")
}

func nodes(t *testing.T, srv *sshd.Server) (cty.Value, string, string) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	cfgPath := filepath.Join(dir, "config.json")
	cfg, _ := json.Marshal(map[string]any{"name": "node-1", "listen": addr, "version": "1", "processing": true,
		"data_dir": filepath.Join(dir, "data"), "db.driver": "sqlite", "db.dsn": filepath.Join(dir, "a.sqlite")})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	require.NoError(t, os.WriteFile(cfgPath, cfg, 0o644))
	return cty.TupleVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{
		"name": cty.StringVal("node-1"), "host": cty.StringVal(srv.Addr), "address": cty.StringVal(addr),
		"config_file": cty.StringVal(cfgPath), "data_dir": cty.StringVal(filepath.Join(dir, "data")),
		"command":  cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("serve"), cty.StringVal("--config"), cty.StringVal(cfgPath)}),
		"pid_file": cty.StringVal(filepath.Join(dir, "pid")), "log_file": cty.StringVal(filepath.Join(dir, "log")),
	})}), addr, cfgPath
}

func config(srv *sshd.Server, knownHosts string, tofu bool) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"known_hosts": cty.StringVal(knownHosts), "trust_on_first_use": cty.BoolVal(tofu), "user": cty.NullVal(cty.String),
		"private_key_file": cty.StringVal(srv.ClientKey), "passphrase": cty.NullVal(cty.String),
		"timeout": cty.StringVal("5s"), "read_only_path": cty.NullVal(cty.String),
	})
}

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

func TestNodeOverSSH(t *testing.T) {
	srv := sshd.Start(t)
	ns, addr, cfgPath := nodes(t, srv)
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: ns}).HasErrors())
	n := cty.StringVal("node-1")
	t.Cleanup(func() { call(p, "stop", map[string]cty.Value{"node": n, "timeout": cty.StringVal("5s")}) })

	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	assert.Equal(t, "1", ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")})).GetAttr("version").AsString())
	ok(t, call(p, "start", map[string]cty.Value{"node": n})) // idempotent
	ok(t, call(p, "read_only", map[string]cty.Value{"node": n, "enabled": cty.True}))
	resp, err := http.Post("http://"+addr+"/items", "application/json", strings.NewReader(`{"value":"x"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	ok(t, call(p, "stop", map[string]cty.Value{"node": n}))
	_, err = net.Dial("tcp", addr)
	assert.Error(t, err, "stopped")
	// The config holds the database's credentials: private, and owned by
	// the service's user, which set_config keeps.
	require.NoError(t, os.Chmod(cfgPath, 0o600))
	require.NoError(t, os.Chown(cfgPath, 65534, 65534))
	assert.True(t, ok(t, call(p, "set_config", map[string]cty.Value{"node": n, "key": cty.StringVal("version"), "value": cty.StringVal("2")})).GetAttr("changed").True())
	st, err := os.Stat(cfgPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "mode kept")
	assert.Equal(t, uint32(65534), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	assert.NoFileExists(t, cfgPath+".upshift-tmp")
	require.NoError(t, os.Chown(cfgPath, 0, 0))
	var cfg map[string]any
	b, _ := os.ReadFile(cfgPath)
	require.NoError(t, json.Unmarshal(b, &cfg))
	assert.Equal(t, "2", cfg["version"])
	assert.Equal(t, "node-1", cfg["name"])

	migrate := cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("migrate"), cty.StringVal("--config"), cty.StringVal(cfgPath)})
	assert.Contains(t, ok(t, call(p, "exec", map[string]cty.Value{"node": n, "command": migrate})).GetAttr("stdout").AsString(), "migrated to version 2")
	again := call(p, "exec", map[string]cty.Value{"node": n, "command": migrate})
	require.True(t, again.Diagnostics.HasErrors())
	assert.Contains(t, again.Diagnostics.Err().Error(), "node node-1: command exited with status 3")

	ok(t, call(p, "touch", map[string]cty.Value{"node": n, "path": cty.StringVal("rolling-upgrade")}))
	bad := call(p, "touch", map[string]cty.Value{"node": n, "path": cty.StringVal("../x")})
	require.True(t, bad.Diagnostics.HasErrors())
	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	assert.Equal(t, "2", ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")})).GetAttr("version").AsString())
	dest := filepath.Join(t.TempDir(), "backup")
	ok(t, call(p, "backup_data", map[string]cty.Value{"node": n, "to": cty.StringVal(dest)}))
	_, err = os.Stat(filepath.Join(dest, "rolling-upgrade"))
	assert.NoError(t, err)
}

func TestHostKeysAndReachability(t *testing.T) {
	srv := sshd.Start(t)
	ns, _, _ := nodes(t, srv)
	n := cty.StringVal("node-1")

	// A known_hosts with another key for this host: refused.
	other := sshd.Start(t)
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	b, _ := os.ReadFile(other.KnownHosts)
	require.NoError(t, os.WriteFile(wrong, []byte(fmt.Sprintf("[127.0.0.1]:%s %s", portOf(srv.Addr), afterHost(string(b)))), 0o600))
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, wrong, false), Nodes: ns}).HasErrors())
	r := call(p, "exec", map[string]cty.Value{"node": n, "command": cty.ListVal([]cty.Value{cty.StringVal("true")})})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "does not match")

	// An unknown host: refused, unless trusted on first use.
	empty := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	p = sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, empty, false), Nodes: ns}).HasErrors())
	r = call(p, "exec", map[string]cty.Value{"node": n, "command": cty.ListVal([]cty.Value{cty.StringVal("true")})})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "is not in")
	assert.Contains(t, r.Diagnostics.Err().Error(), "SHA256:")

	p = sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, empty, true), Nodes: ns}).HasErrors())
	ok(t, call(p, "exec", map[string]cty.Value{"node": n, "command": cty.ListVal([]cty.Value{cty.StringVal("true")})}))
	rec, _ := os.ReadFile(empty)
	assert.Contains(t, string(rec), "ssh-ed25519", "the key is recorded")

	// An unreachable host: one line naming the node and the address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()
	deadNodes := cty.TupleVal([]cty.Value{replaceHost(ns.Index(cty.NumberIntVal(0)), dead)})
	p = sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: deadNodes}).HasErrors())
	r = call(p, "exec", map[string]cty.Value{"node": n, "command": cty.ListVal([]cty.Value{cty.StringVal("true")})})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "node node-1: connecting to "+dead)
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func afterHost(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == ' ' {
			return line[i+1:]
		}
	}
	return line
}

func replaceHost(v cty.Value, addr string) cty.Value {
	m := v.AsValueMap()
	m["host"] = cty.StringVal(addr)
	return cty.ObjectVal(m)
}

// TestServiceCommands drives a node whose service is run by configured
// commands (as with systemctl): the plugin uses them, not its pid file.
func TestServiceCommands(t *testing.T) {
	srv := sshd.Start(t)
	ns, addr, _ := nodes(t, srv)
	v := ns.Index(cty.NumberIntVal(0)).AsValueMap()
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	pid := filepath.Join(dir, "svc.pid")
	script := func(name, body string) cty.Value {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\necho "+name+" >> "+calls+"\n"+body+"\n"), 0o755))
		return cty.ListVal([]cty.Value{cty.StringVal(p)})
	}
	cmd := v["command"].AsValueSlice()
	var argv []string
	for _, c := range cmd {
		argv = append(argv, "'"+c.AsString()+"'")
	}
	v["start_command"] = script("start", "setsid "+strings.Join(argv, " ")+" > /dev/null 2>&1 < /dev/null & echo $! > "+pid)
	v["stop_command"] = script("stop", "kill $(cat "+pid+")")
	v["status_command"] = script("status", "kill -0 $(cat "+pid+" 2>/dev/null) 2>/dev/null")
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: cty.TupleVal([]cty.Value{cty.ObjectVal(v)})}).HasErrors())
	n := cty.StringVal("node-1")
	ok(t, call(p, "start", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	ok(t, call(p, "stop", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	_, err := net.Dial("tcp", addr)
	assert.Error(t, err, "stopped by its stop_command")
	b, _ := os.ReadFile(calls)
	assert.Equal(t, []string{"status", "start", "status", "status", "stop"}, strings.Fields(string(b))[:5])
}
