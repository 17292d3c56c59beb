package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

func strs(ss ...string) cty.Value {
	var vs []cty.Value
	for _, s := range ss {
		vs = append(vs, cty.StringVal(s))
	}
	return cty.ListVal(vs)
}

func withNulls(p plugins.Provider, action string, args map[string]cty.Value) cty.Value {
	sch, _ := p.Schema(context.Background())
	for _, a := range sch.Actions[action].Args.Attributes {
		if _, ok := args[a.Name]; !ok {
			args[a.Name] = cty.NullVal(a.Type)
		}
	}
	return cty.ObjectVal(args)
}

// The sshd runs on this machine, so the remote processes are visible here.
func remotePids(t *testing.T, file string) []int {
	t.Helper()
	var pids []int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(file)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pids = nil
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
		return len(pids) == 2
	}, 10*time.Second, 10*time.Millisecond)
	return pids
}

func requireGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range procfs.WaitGone(pids, 5*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("remote pid %d of the step outlived it", pid)
	}
}

// TestExecOverSSHEndsWithTheStep: a cancelled step, and a connection lost
// as when the plugin dies, leave nothing of the command on the host.
func TestExecOverSSHEndsWithTheStep(t *testing.T) {
	srv := sshd.Start(t)
	ns, _, _ := nodes(t, srv)
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: ns}).HasErrors())
	dir := t.TempDir()
	outliving := func(file string) cty.Value {
		return strs("sh", "-c", "sleep 30 & echo $$ $! > "+file+"; wait")
	}

	file := filepath.Join(dir, "cancel.pids")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan plugins.InvokeResponse, 1)
	go func() {
		done <- p.Invoke(ctx, plugins.InvokeRequest{Action: "exec", Args: withNulls(p, "exec", map[string]cty.Value{"node": cty.StringVal("node-1"), "command": outliving(file)})})
	}()
	pids := remotePids(t, file)
	cancel()
	require.True(t, (<-done).Diagnostics.HasErrors())
	requireGone(t, pids)

	// The plugin dies: its connection closes under the running command.
	h := newHost("root", srv.Addr, &sshConfig{knownHosts: srv.KnownHosts, timeout: 10 * time.Second}, 8)
	auth, err := authMethods(srv.ClientKey, "")
	require.NoError(t, err)
	h.cfg.auth = auth
	file = filepath.Join(dir, "lost.pids")
	lost := make(chan error, 1)
	go func() {
		_, _, err := h.runStep(context.Background(), []string{"sh", "-c", "sleep 30 & echo $$ $! > " + file + "; wait"}, nil, time.Minute)
		lost <- err
	}()
	pids = remotePids(t, file)
	h.close()
	assert.Error(t, <-lost)
	requireGone(t, pids)

	// A normal end is untouched: status and output come back.
	r := call(p, "exec", map[string]cty.Value{"node": cty.StringVal("node-1"), "shell": cty.StringVal("echo out; echo err >&2; exit 4")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "command exited with status 4: err | out")
}

// TestExecCheckOverSSH: Done, NotDone and Unknown from the check command.
func TestExecCheckOverSSH(t *testing.T) {
	srv := sshd.Start(t)
	ns, _, _ := nodes(t, srv)
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: ns}).HasErrors())
	ask := func(check ...string) plugins.CheckResponse {
		return p.Check(context.Background(), plugins.InvokeRequest{Action: "exec", Args: withNulls(p, "exec", map[string]cty.Value{
			"node": cty.StringVal("node-1"), "command": strs("true"), "check": strs(check...)})})
	}
	c := ask("sh", "-c", "echo done")
	require.Equal(t, plugins.CheckApplied, c.State, c.Detail)
	assert.Equal(t, "done\n", c.Result.GetAttr("stdout").AsString())
	assert.Equal(t, plugins.CheckNotApplied, ask("false").State)
	c = ask("sh", "-c", "exit 6")
	assert.Equal(t, plugins.CheckUnknown, c.State)
	assert.Contains(t, c.Detail, "status 6")
}

// TestStartOverSSHRefusesAStray: a platformd of the node already serving
// on its port, with no pid file, is not taken for the one start launched.
func TestStartOverSSHRefusesAStray(t *testing.T) {
	srv := sshd.Start(t)
	ns, addr, cfgPath := nodes(t, srv)
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: config(srv, srv.KnownHosts, false), Nodes: ns}).HasErrors())
	stray := exec.Command(platformd, "serve", "--config", cfgPath)
	require.NoError(t, stray.Start())
	t.Cleanup(func() { _ = stray.Process.Kill(); _ = stray.Wait() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)
	r := call(p, "start", map[string]cty.Value{"node": cty.StringVal("node-1"), "timeout": cty.StringVal("10s")})
	require.True(t, r.Diagnostics.HasErrors(), "start must not succeed on the stray's answer")
	msg := r.Diagnostics.Err().Error()
	t.Logf("start: %s", msg)
	assert.Contains(t, msg, addr+" answers as node-1 version 1 pid "+strconv.Itoa(stray.Process.Pid))
	assert.Nil(t, stray.ProcessState, "the stray is not start's to stop")
}
