package traffic_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// theLab is one real lab (3 platformd nodes behind HAProxy) shared by the
// tests of this package; each test leaves it as it found it.
var theLab *lab.State

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if !testingShort() {
		tmp, err := os.MkdirTemp("", "upshift-traffic-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		bin := filepath.Join(tmp, "bin")
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "platformd"), "github.com/upshift-dev/upshift/cmd/platformd").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building platformd: %v\n%s", err, out)
			return 1
		}
		s, err := lab.Up(context.Background(), filepath.Join(tmp, "lab"), bin, io.Discard)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lab up: %v\n", err)
			return 1
		}
		theLab = s
		defer func() { _ = lab.Down(s, io.Discard) }()
	}
	return m.Run()
}

// testingShort reads -short before m.Run parses the flags for the tests.
func testingShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" || a == "--test.short" {
			return true
		}
	}
	return false
}

func needLab(t *testing.T) (*lab.State, *runtimeapi.Client) {
	t.Helper()
	if theLab == nil {
		t.Skip("needs the lab (platformd and HAProxy): skipped with -short")
	}
	return theLab, runtimeapi.NewClient(theLab.HAProxyCtl().Socket, 2*time.Second)
}

// server returns HAProxy's `show stat` row of one server.
func server(t *testing.T, c *runtimeapi.Client, name string) runtimeapi.Stat {
	t.Helper()
	rows, _, err := c.Servers(context.Background(), lab.Backend)
	require.NoError(t, err)
	for _, r := range rows {
		if r["svname"] == name {
			return r
		}
	}
	t.Fatalf("HAProxy has no server %s", name)
	return nil
}

// restore starts a stopped or killed node again and puts it back in
// rotation, as the playbook's start, wait_healthy and enable steps do.
func restore(t *testing.T, s *lab.State, c *runtimeapi.Client, n lab.NodeState) {
	t.Helper()
	ctx := context.Background()
	quiet := func(string, ...any) {}
	ln := s.Node(n)
	_, err := ln.Start(ctx, 10*time.Second, quiet)
	require.NoError(t, err)
	_, err = ln.WaitHealthy(ctx, 10*time.Second, 1, quiet)
	require.NoError(t, err)
	require.NoError(t, c.SetServerState(ctx, lab.Backend, n.Name, runtimeapi.StateReady))
	require.Eventually(t, func() bool { return server(t, c, n.Name)["status"] == "UP" }, 10*time.Second, 50*time.Millisecond,
		"%s back UP in HAProxy", n.Name)
}

func served(samples []traffic.Sample, node string, from, to time.Time) int {
	n := 0
	for _, x := range samples {
		if x.Node == node && !x.At.Before(from) && x.At.Before(to) {
			n++
		}
	}
	return n
}

// TestGracefulDrainShowsNoFailure takes a node out the way the playbook
// does (DRAIN, its sessions' end or the drain timeout, MAINT, the requests
// in flight, SIGTERM) under load:
// not one request may fail, and not one acknowledged write may be lost.
func TestGracefulDrainShowsNoFailure(t *testing.T) {
	s, c := needLab(t)
	ctx := context.Background()
	victim := s.Nodes[1]
	defer restore(t, s, c, victim)

	load := traffic.Start(ctx, traffic.Options{URL: s.URL(), Duration: 20 * time.Second})
	defer load.Stop()
	time.Sleep(time.Second)
	upgrade := time.Now()

	require.NoError(t, c.SetServerState(ctx, lab.Backend, victim.Name, runtimeapi.StateDrain))
	// The lab runs with affinity: a session whose cookie names the victim
	// keeps coming to it while it drains, so, as the playbook's drain does,
	// its sessions get until the drain timeout (the lab's 3s) to end, then
	// maintenance redispatches them and only requests in flight remain.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && server(t, c, victim.Name).Int("scur") != 0 {
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, c.SetServerState(ctx, lab.Backend, victim.Name, runtimeapi.StateMaint))
	require.Eventually(t, func() bool { return server(t, c, victim.Name).Int("scur") == 0 }, 10*time.Second, 20*time.Millisecond,
		"the requests in flight on the drained node end")
	out := time.Now()
	stopped, err := s.Node(victim).Stop(ctx, 10*time.Second, func(string, ...any) {})
	require.NoError(t, err)
	require.True(t, stopped)
	time.Sleep(time.Second)
	restore(t, s, c, victim)
	time.Sleep(500 * time.Millisecond)
	samples := load.Stop()

	lost, err := traffic.Missing(ctx, s.URL(), samples)
	require.NoError(t, err)
	sum := traffic.Summarize(samples, lost, upgrade)
	t.Logf("%d requests\n%s", sum.Requests, sum)
	assert.Equal(t, 0, sum.ReadsFailed, "failed reads")
	assert.Equal(t, 0, sum.WritesFailed, "failed writes")
	assert.Empty(t, lost, "lost writes")
	assert.True(t, sum.Clean())

	// The load was real: enough of each kind, every node served, and the
	// drained node got nothing while it was out.
	assert.Greater(t, sum.SlowReads, 40)
	assert.Greater(t, sum.FastReads, 20)
	assert.Greater(t, sum.WritesAcked, 20)
	assert.Positive(t, sum.P50Before)
	assert.Positive(t, sum.P99During)
	assert.Positive(t, served(samples, victim.Name, time.Time{}, upgrade), "the victim served before the drain")
	assert.Zero(t, served(samples, victim.Name, out, out.Add(time.Second)), "nothing sent to the victim while out")
	for _, n := range s.Nodes {
		assert.Positive(t, served(samples, n.Name, time.Time{}, time.Now()), n.Name)
	}
}

// TestKillWithoutDrainShowsFailures is the negative control: a node killed
// with slow requests in flight, without a drain, must show failed requests,
// or the check above could not see a careless upgrade at all.
func TestKillWithoutDrainShowsFailures(t *testing.T) {
	s, c := needLab(t)
	ctx := context.Background()
	victim := s.Nodes[2]
	var last traffic.Summary
	for attempt := 1; attempt <= 3; attempt++ {
		load := traffic.Start(ctx, traffic.Options{URL: s.URL(), Duration: 20 * time.Second})
		time.Sleep(time.Second)
		// Kill only once the victim holds requests in flight.
		require.Eventually(t, func() bool { return server(t, c, victim.Name).Int("scur") > 0 }, 5*time.Second, 5*time.Millisecond)
		pid := s.Node(victim).Pid()
		require.NotZero(t, pid)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		time.Sleep(1500 * time.Millisecond)
		samples := load.Stop()
		restore(t, s, c, victim)

		lost, err := traffic.Missing(ctx, s.URL(), samples)
		require.NoError(t, err)
		last = traffic.Summarize(samples, lost, time.Time{})
		if last.Failed() > 0 {
			t.Logf("attempt %d: %d requests, %d failed:\n%s", attempt, last.Requests, last.Failed(), last)
			assert.False(t, last.Clean())
			assert.Empty(t, lost, "writes acknowledged before the kill were committed")
			return
		}
	}
	t.Fatalf("a SIGKILL with requests in flight showed no failure in 3 attempts:\n%s", last)
}
