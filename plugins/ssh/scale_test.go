package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/benchmeter"
	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	pluginhost "github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// folderNodes writes n nodes that are folders on the sshd's host (a config
// file and a data folder each; no process runs), as the nodes value of a
// playbook's variables.
func folderNodes(tb testing.TB, srv *sshd.Server, n int) []string {
	dir := tb.TempDir()
	out := make([]string, n)
	for i := range out {
		nd := filepath.Join(dir, fmt.Sprintf("n%04d", i))
		require.NoError(tb, os.MkdirAll(filepath.Join(nd, "data"), 0o755))
		cfg, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("n%04d", i), "version": "1"})
		require.NoError(tb, os.WriteFile(filepath.Join(nd, "config.json"), cfg, 0o644))
		out[i] = fmt.Sprintf(`{ name = "n%04d", host = %q, address = "127.0.0.1:1", config_file = %q, data_dir = %q, pid_file = %q, log_file = %q, command = ["true"] }`,
			i, srv.Addr, filepath.Join(nd, "config.json"), filepath.Join(nd, "data"), filepath.Join(nd, "pid"), filepath.Join(nd, "log"))
	}
	return out
}

// TestNodesOnOneHostShareAConnection: nodes on one host and user share one
// connection (one handshake, not 24), and no more than max_sessions
// commands run on it at once, so sshd (MaxSessions 10) never refuses a
// session however many nodes run a step together.
func TestNodesOnOneHostShareAConnection(t *testing.T) {
	srv := sshd.Start(t)
	p := sdktest.Provider(t, newPlugin())
	list := folderNodes(t, srv, 24)
	vals := make([]cty.Value, len(list))
	for i := range list {
		nd := filepath.Dir(strings.Split(strings.Split(list[i], `config_file = "`)[1], `"`)[0])
		vals[i] = cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(fmt.Sprintf("n%04d", i)), "host": cty.StringVal(srv.Addr), "address": cty.StringVal("127.0.0.1:1"),
			"config_file": cty.StringVal(filepath.Join(nd, "config.json")), "data_dir": cty.StringVal(filepath.Join(nd, "data")),
			"pid_file": cty.StringVal(filepath.Join(nd, "pid")), "log_file": cty.StringVal(filepath.Join(nd, "log")),
			"command": cty.ListVal([]cty.Value{cty.StringVal("true")}),
		})
	}
	cfg := config(srv, srv.KnownHosts, false)
	attrs := cfg.AsValueMap()
	attrs["max_sessions"] = cty.NumberIntVal(4)
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(attrs), Nodes: cty.TupleVal(vals)})
	require.False(t, d.HasErrors(), "%v", d.Err())

	// 24 nodes each run a command that records how many run at once: each
	// has a file of its own in a folder for as long as it runs, and counts
	// the folder's files. (A shared line counter edited with sed -i lost
	// lines when two edits crossed, and counted more than ran.)
	counter := filepath.Join(t.TempDir(), "running")
	script := fmt.Sprintf(`f=$(mktemp -p %[1]s); ls %[1]s | wc -l >> %[1]s.seen; sleep 0.3; rm "$f"`, counter)
	require.NoError(t, os.Mkdir(counter, 0o755))
	var wg sync.WaitGroup
	errs := make([]error, len(vals))
	for i := range vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := call(p, "exec", map[string]cty.Value{"node": cty.StringVal(fmt.Sprintf("n%04d", i)), "shell": cty.StringVal(script)})
			errs[i] = r.Diagnostics.Err()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "node %d", i)
	}
	seen, err := os.ReadFile(counter + ".seen")
	require.NoError(t, err)
	most := 0
	for _, l := range strings.Fields(string(seen)) {
		var n int
		fmt.Sscan(l, &n)
		most = max(most, n)
	}
	assert.Len(t, strings.Fields(string(seen)), 24, "every node ran")
	assert.LessOrEqual(t, most, 4, "at most max_sessions at once on the host")
	log, err := os.ReadFile(filepath.Join(srv.Dir, "sshd.log"))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(log), "Accepted publickey"), "the 24 nodes shared one connection:\n%s", log)
}

// TestShortSessionsAreNotRefused: many nodes running short commands at
// once, max_sessions 8 under sshd's MaxSessions of 10, get no "open
// failed" from sshd. sshd counts a closed session until it has collected
// the channel, after the batch of packets its close came in: a slot given
// back as soon as the client saw the close let a new session into that
// same batch, over the limit (18 of 400 refused before slots waited for
// sshd's reply to a keepalive).
func TestShortSessionsAreNotRefused(t *testing.T) {
	srv := sshd.Start(t)
	auth, err := authMethods(srv.ClientKey, "")
	require.NoError(t, err)
	h := newHost("root", srv.Addr, &sshConfig{knownHosts: srv.KnownHosts, timeout: 30 * time.Second, auth: auth}, 8)
	defer h.close()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, _, err := h.runStep(context.Background(), []string{"true"}, nil, 30*time.Second); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 3 {
			t.Error(err)
		}
	}
	assert.Zero(t, n, "sessions refused")
}

// BenchmarkSSHRollout1000 upgrades 1,000 nodes that are folders behind one
// sshd on loopback, in batches of 50, through the real ssh plugin over
// gRPC, with the journal fsync'd: per node an exec, a set_config and a
// touch (3,000 steps). One connection serves them all (max_sessions 8). It
// reports the wall time, the CPU of upshift and of the plugin, the runner's
// peak heap and the plugin's peak resident set. UPSHIFT_BENCH_SSH_NODES
// runs it over fewer nodes.
func BenchmarkSSHRollout1000(b *testing.B) {
	n := 1000
	if v := os.Getenv("UPSHIFT_BENCH_SSH_NODES"); v != "" { // a quick look at fewer nodes
		fmt.Sscan(v, &n)
	}
	srv := sshd.Start(b)
	tmp := b.TempDir()
	path, sum, err := hosttest.Build("github.com/upshift-dev/upshift/plugins/ssh", "ssh", tmp)
	require.NoError(b, err)
	src := fmt.Sprintf(`node_pool "fleet" {
  plugin = "ssh"
  config {
    known_hosts      = %q
    private_key_file = %q
    timeout          = "30s"
  }
  nodes = [%s]
}
rollout "upgrade" {
  over         = node_pool.fleet.nodes
  max_parallel = 50
  step "migrate" {
    run = node_pool.fleet.exec
    with {
      node    = each.value.name
      command = ["true"]
    }
  }
  step "install" {
    run = node_pool.fleet.set_config
    with {
      node  = each.value.name
      key   = "version"
      value = "2"
    }
  }
  step "marker" {
    run = node_pool.fleet.touch
    with {
      node = each.value.name
      path = "rolling-upgrade"
    }
  }
}
`, srv.KnownHosts, srv.ClientKey, strings.Join(folderNodes(b, srv, n), ",\n    "))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		p, err := pluginhost.Launch(context.Background(), pluginhost.LaunchSpec{Name: "ssh", Path: path, SHA256: sum})
		require.NoError(b, err)
		sch, err := p.Schema(context.Background())
		require.NoError(b, err)
		pb, diags := playbooks.NewParser().LoadFiles(dir, map[string]string{"main.hcl": src}, playbooks.LoadOptions{Env: []string{},
			Schemas: func(*playbooks.PluginBlock, schema.Kind) (*schema.PluginSchema, error) { return sch, nil }})
		require.False(b, diags.HasErrors(), diags.Error())
		g, diags := runner.BuildGraph(pb)
		require.False(b, diags.HasErrors(), diags.Error())
		fleet := pb.Resources["node_pool.fleet"]
		d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: fleet.Config, Nodes: fleet.Nodes})
		require.False(b, d.HasErrors(), "%v", d.Err())
		j, err := journal.Open(filepath.Join(dir, "state"))
		require.NoError(b, err)
		pid := p.(interface{ Pid() int }).Pid()
		pluginCPU0 := processCPU(b, pid)
		m := benchmeter.Start()
		b.StartTimer()
		start := time.Now()
		res, err := runner.Run(context.Background(), g, runner.Options{Providers: map[string]plugins.Provider{"node_pool.fleet": p}, Journal: j, Parallelism: 50})
		wall := time.Since(start)
		b.StopTimer()
		cpu, peak := m.Stop()
		pluginCPU := processCPU(b, pid) - pluginCPU0
		pluginRSS := processMaxRSSMB(b, pid)
		for _, name := range res.Failed { // why, before the bare "the run failed"
			if o := res.Outcomes[name]; o != nil && o.Err != nil {
				b.Errorf("%s: %v", name, o.Err)
			}
		}
		require.NoError(b, err)
		require.Equal(b, journal.Done, res.Status)
		_ = p.Close()
		_ = j.Close()
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(cpu.Milliseconds()), "upshift-cpu-ms")
		b.ReportMetric(float64(pluginCPU.Milliseconds()), "plugin-cpu-ms")
		b.ReportMetric(peak, "peak-heap-MB")
		b.ReportMetric(pluginRSS, "plugin-rss-MB")
	}
}

// processCPU is the user and system time of process pid so far.
func processCPU(tb testing.TB, pid int) time.Duration {
	p, ok := procfs.Read(pid)
	require.True(tb, ok, "process %d", pid)
	return p.CPU
}

// processMaxRSSMB is the peak resident set of process pid (VmHWM).
func processMaxRSSMB(tb testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(tb, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024
		}
	}
	return 0
}
