package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// outliving is an exec command whose child would outlive it: sh writes its
// own pid and its background sleep's to file, then waits.
func outliving(file string) cty.Value {
	return cty.ListVal([]cty.Value{cty.StringVal("sh"), cty.StringVal("-c"), cty.StringVal("sleep 30 & echo $$ $! > " + file + "; wait")})
}

// groupPids waits for outliving's file and returns the pids in it; running
// says they must still run.
func groupPids(t *testing.T, file string, running bool) []int {
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
	for _, pid := range pids {
		require.True(t, !running || procfs.Alive(pid), "pid %d runs while the step does", pid)
	}
	return pids
}

// requireGone reports each of pids that outlives its step, and returns how
// many did.
func requireGone(t *testing.T, pids []int) int {
	t.Helper()
	left := procfs.WaitGone(pids, 5*time.Second)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("pid %d of the step's process group outlived it", pid)
	}
	return len(left)
}

// TestExecGroupEndsWithTheStep: a cancelled step, and a step past its
// timeout, leave no process of the command's group.
func TestExecGroupEndsWithTheStep(t *testing.T) {
	nodes, _, dir := pool(t, "1")
	p := provider(t, nodes)
	sch, _ := p.Schema(context.Background())

	file := filepath.Join(dir, "cancel.pids")
	args := map[string]cty.Value{"node": node("node-1"), "command": outliving(file)}
	for _, a := range sch.Actions["exec"].Args.Attributes {
		if _, ok := args[a.Name]; !ok {
			args[a.Name] = cty.NullVal(a.Type)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan plugins.InvokeResponse, 1)
	go func() { done <- p.Invoke(ctx, plugins.InvokeRequest{Action: "exec", Args: cty.ObjectVal(args)}) }()
	pids := groupPids(t, file, true)
	cancel()
	r := <-done
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "context canceled")
	requireGone(t, pids)

	file = filepath.Join(dir, "timeout.pids")
	start := time.Now()
	r = call(p, "exec", map[string]cty.Value{"node": node("node-1"), "command": outliving(file), "timeout": cty.StringVal("1s")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "timed out after 1s")
	assert.Less(t, time.Since(start), 5*time.Second)
	requireGone(t, groupPids(t, file, false))

	// A command that leaves a child behind and exits: the child goes too.
	file = filepath.Join(dir, "left.pids")
	ok(t, call(p, "exec", map[string]cty.Value{"node": node("node-1"), "shell": cty.StringVal("sleep 30 & echo $$ $! > " + file)}))
	requireGone(t, groupPids(t, file, false))
}

// TestExecGroupDiesWithThePlugin SIGKILLs the real plugin binary in the
// middle of an exec, five times: no process of the command's group
// remains, and neither does the plugin.
func TestExecGroupDiesWithThePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	bin, sum, err := hosttest.Build("github.com/upshift-dev/upshift/plugins/process", "process", t.TempDir())
	require.NoError(t, err)
	nodes, _, dir := pool(t, "1")
	left := 0
	for round := range 5 {
		pp, err := host.Launch(context.Background(), host.LaunchSpec{Name: "process", Path: bin, SHA256: sum, Logger: hclog.NewNullLogger()})
		require.NoError(t, err)
		inst := pp.(*host.Process)
		cfg := cty.ObjectVal(map[string]cty.Value{"read_only_path": cty.NullVal(cty.String), "start_timeout": cty.NullVal(cty.String), "stop_timeout": cty.NullVal(cty.String)})
		require.False(t, inst.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: nodes}).HasErrors())
		file := filepath.Join(dir, "kill"+strconv.Itoa(round)+".pids")
		done := make(chan plugins.InvokeResponse, 1)
		go func() {
			done <- call(inst, "exec", map[string]cty.Value{"node": node("node-1"), "command": outliving(file)})
		}()
		pids := groupPids(t, file, true)
		require.NoError(t, syscall.Kill(inst.Pid(), syscall.SIGKILL))
		r := <-done
		require.True(t, r.Diagnostics.HasErrors(), "the call fails with its plugin")
		left += requireGone(t, pids)
		assert.Empty(t, procfs.WaitGone([]int{inst.Pid()}, 5*time.Second), "the plugin is gone")
		_ = inst.Close()
	}
	t.Logf("5 SIGKILLs of the plugin mid-exec: %d of 10 step processes left", left)
}
