package playbooks_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upshift-dev/upshift/internal/benchmeter"
	"github.com/upshift-dev/upshift/playbooks"
)

// writeNodes writes a variables file for the shipped playbook with n nodes.
func writeNodes(b *testing.B, n int) string {
	src, err := os.ReadFile("testdata/three-nodes.vars.hcl")
	if err != nil {
		b.Fatal(err)
	}
	head := string(src[:strings.Index(string(src), "nodes = [")])
	var sb strings.Builder
	sb.WriteString(head)
	sb.WriteString("nodes = [\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sb, "  { name = \"node-%d\", processing = %t, migrate_command = [\"platformd\", \"migrate\", \"--config\", \"/etc/platform/node-%d.json\"] },\n", i, i == 1, i)
	}
	sb.WriteString("]\n")
	path := filepath.Join(b.TempDir(), "vars.hcl")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// stepsFor is the number of steps the shipped playbook plans for n nodes:
// linear in n, so two small plans give it, whatever steps the playbook has.
func stepsFor(b *testing.B, n int) int {
	count := func(k int) int {
		_, plan, diags := check(b, "rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{writeNodes(b, k)}, Env: []string{}})
		if diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		return len(plan.Steps)
	}
	s2, s3 := count(2), count(3)
	return s2 + (n-2)*(s3-s2)
}

// BenchmarkPlan loads, expands and plans the shipped playbook for clusters
// of 3, 100 and 1,000 nodes (target: 1,000 nodes in under 200 ms).
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{3, 100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			vars := writeNodes(b, n)
			want := stepsFor(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, plan, diags := check(b, "rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{vars}, Env: []string{}})
				if diags.HasErrors() {
					b.Fatal(diags.Error())
				}
				if len(plan.Steps) != want {
					b.Fatalf("plan has %d steps, want %d", len(plan.Steps), want)
				}
			}
		})
	}
}

// BenchmarkPlan10000 is validate of the shipped playbook for 10,000 nodes,
// which is also what plan does before printing: parse, decode, graph and
// every instance's arguments (target under 1 s of CPU and 250 MB of heap,
// cpu-ms/op and peak-heap-MB, CPU of every goroutine, as make bench's
// table reads them). Printing the plan as text (120,000 steps) is measured
// apart, text-cpu-ms/op, so that the headline stays the one issue 14 set.
func BenchmarkPlan10000(b *testing.B) {
	const n = 10000
	vars := writeNodes(b, n)
	want := stepsFor(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := benchmeter.Start()
		_, plan, diags := check(b, "rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{vars}, Env: []string{}})
		cpu, peak := m.Stop()
		if diags.HasErrors() {
			b.Fatal(diags.Error())
		}
		if len(plan.Steps) != want {
			b.Fatalf("plan has %d steps, want %d", len(plan.Steps), want)
		}
		b.StopTimer() // ns/op and B/op stay validate's
		m = benchmeter.Start()
		if err := plan.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
		text, _ := m.Stop()
		b.StartTimer()
		b.ReportMetric(float64(cpu.Milliseconds()), "cpu-ms/op")
		b.ReportMetric(peak, "peak-heap-MB")
		b.ReportMetric(float64(text.Milliseconds()), "text-cpu-ms/op")
	}
}

// BenchmarkRender writes the 1,000-node plan as text and the graph as DOT
// (with its transitive reduction), what `upshift plan` and `upshift graph`
// add to BenchmarkPlan.
func BenchmarkRender(b *testing.B) {
	vars := writeNodes(b, 1000)
	_, plan, diags := check(b, "rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{vars}, Env: []string{}})
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	b.Run("plan-text", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := plan.WriteText(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("graph-dot", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := plan.Graph.WriteDOT(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// localsSource is a playbook of about size bytes of locals, each but the
// first referring to the one before it.
func localsSource(size int) string {
	var sb strings.Builder
	sb.WriteString("locals {\n  l0 = 0\n")
	for i := 1; sb.Len() < size; i++ {
		fmt.Fprintf(&sb, "  l%d = local.l%d + 1\n", i, i-1)
	}
	sb.WriteString("}\n")
	return sb.String()
}

// BenchmarkLocals validates 256 KB, 1 MB (the largest file accepted) and
// 2 MB (the largest playbook, in two files) of locals, each referring to
// the one before (issue 11: it was quadratic and 10 MB never ended; 10 MB
// is now refused).
func BenchmarkLocals(b *testing.B) {
	for _, size := range []int{256 << 10, playbooks.MaxFileBytes - 64, playbooks.MaxPlaybookBytes - 128} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			src := map[string]string{"main.hcl": localsSource(min(size, playbooks.MaxFileBytes-64))}
			if size > playbooks.MaxFileBytes {
				src["more.hcl"] = strings.NewReplacer("  l", "  m", "local.l", "local.m").Replace(localsSource(size - playbooks.MaxFileBytes))
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, diags := playbooks.NewParser().LoadFiles("/nonexistent", src, playbooks.LoadOptions{Env: []string{}})
				if diags.HasErrors() {
					b.Fatal(diags.Error())
				}
			}
		})
	}
}
