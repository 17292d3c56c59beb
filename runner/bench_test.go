package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/benchmeter"
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
// with the journal fsync'd as in production. Target: under 3 s and 150 MB,
// i.e. 0.3 ms of runner overhead per step. It reports ms/step and the
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
		perStep, peak := benchRun(b, path, sum, "node_pool.kit", src, cty.EmptyObjectVal, 10, 10000)
		b.ReportMetric(perStep, "ms/step")
		b.ReportMetric(peak, "peak-heap-MB")
	}
}

// benchRun launches the plugin at path for resource, loads src against its
// schema, and runs it with a journal fsync'd as in production, timing only
// the run. It returns the wall time per step in ms (over steps) and the
// peak heap in MB. The timer is stopped on return.
func benchRun(b *testing.B, path, sum, resource, src string, config cty.Value, parallelism, steps int) (msPerStep, peakMB float64) {
	b.Helper()
	dir := b.TempDir()
	name := strings.TrimPrefix(filepath.Base(path), "upshift-plugin-")
	p, err := host.Launch(context.Background(), host.LaunchSpec{Name: name, Path: path, SHA256: sum})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
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
	if d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: config, Nodes: pb.Resources[resource].Nodes}); d.HasErrors() {
		b.Fatal(d.Err())
	}
	j, err := journal.Open(filepath.Join(dir, "state"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	m := benchmeter.Start()
	b.StartTimer()
	start := time.Now()
	res, err := runner.Run(context.Background(), g, runner.Options{Providers: map[string]plugins.Provider{resource: p}, Journal: j, Parallelism: parallelism})
	b.StopTimer()
	elapsed := time.Since(start)
	if err != nil || res.Status != journal.Done {
		b.Fatalf("run: %v", err)
	}
	if n := len(g.Instances); n != steps {
		b.Fatalf("ran %d steps, want %d", n, steps)
	}
	_, peak := m.Stop()
	return float64(elapsed.Microseconds()) / float64(steps) / 1000, peak
}
