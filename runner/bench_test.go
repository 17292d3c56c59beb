package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// BenchmarkRollout10000 runs a 1,000-item rollout of 10 no-op steps per
// item (10,000 step executions) through the real testkit plugin over gRPC,
// with the journal fsync'd as in production. Target: under 10 s and 200 MB,
// i.e. under 1 ms of runner overhead per step. It reports ms/step and the
// peak heap.
func BenchmarkRollout10000(b *testing.B) {
	tmp := b.TempDir()
	path, sum, err := hosttest.BuildTestkit(tmp)
	if err != nil {
		b.Fatal(err)
	}
	var nodes []string
	for i := 0; i < 1000; i++ {
		nodes = append(nodes, fmt.Sprintf(`{ name = "n%d" }`, i))
	}
	var steps strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&steps, "  step \"s%d\" {\n    run = node_pool.kit.noop\n  }\n", i)
	}
	src := fmt.Sprintf("node_pool \"kit\" {\n  plugin = \"testkit\"\n  nodes = [%s]\n}\nrollout \"r\" {\n  over = node_pool.kit.nodes\n  max_parallel = 10\n%s}\n", strings.Join(nodes, ", "), steps.String())

	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: path, SHA256: sum})
		if err != nil {
			b.Fatal(err)
		}
		sch, err := p.Schema(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		pb, diags := playbooks.NewParser().LoadFiles(dir, map[string]string{"main.hcl": src}, playbooks.LoadOptions{Env: []string{},
			Schemas: func(*playbooks.PluginBlock, schema.Kind) (*schema.PluginSchema, error) { return sch, nil }})
		if diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		g, diags := runner.BuildGraph(pb)
		if diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		if d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: pb.Resources["node_pool.kit"].Nodes}); d.HasErrors() {
			b.Fatal(d.Err())
		}
		j, err := journal.Open(filepath.Join(dir, "state"))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		peak := trackPeakHeap()
		b.StartTimer()
		start := time.Now()
		res, err := runner.Run(context.Background(), g, runner.Options{Providers: map[string]plugins.Provider{"node_pool.kit": p}, Journal: j, Parallelism: 10})
		b.StopTimer()
		if err != nil || res.Status != journal.Done {
			b.Fatalf("run: %v", err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/10000/1000, "ms/step")
		b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MB")
		_ = p.Close()
		_ = j.Close()
	}
}

// trackPeakHeap samples the heap every 10 ms until the returned function is
// called, which returns the largest HeapAlloc seen.
func trackPeakHeap() func() uint64 {
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapAlloc)
	}
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		sample()
		return peak
	}
}
