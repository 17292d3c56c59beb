package runner_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/host/hosttest"
)

// BenchmarkExecTrue500 runs 500 exec steps of /bin/true, one after the
// other, through the real process plugin over gRPC, with the journal
// fsync'd as in production: the per-step cost an operator pays for a
// command (target: at most 1.2 ms a step; Ansible's command module, 346 ms).
func BenchmarkExecTrue500(b *testing.B) {
	const steps = 500
	tmp := b.TempDir()
	path, sum, err := hosttest.Build("github.com/upshift-dev/upshift/plugins/process", "process", tmp)
	if err != nil {
		b.Fatal(err)
	}
	// One node the plugin knows; exec needs no running process.
	nd := filepath.Join(tmp, "node")
	node := fmt.Sprintf(`{ name = "n1", address = "127.0.0.1:1", config_file = %q, data_dir = %q, pid_file = %q, log_file = %q, command = ["/bin/true"] }`,
		nd+"/config.json", nd+"/data", nd+"/pid", nd+"/log")
	keys := make([]string, steps)
	for i := range keys {
		keys[i] = fmt.Sprintf("%q", fmt.Sprintf("t%03d", i))
	}
	src := fmt.Sprintf(`node_pool "p" {
  plugin = "process"
  nodes  = [%s]
}
step "true" {
  for_each = toset([%s])
  run      = node_pool.p.exec
  with {
    node    = "n1"
    command = ["/bin/true"]
  }
}
`, node, strings.Join(keys, ", "))
	config := cty.ObjectVal(map[string]cty.Value{
		"read_only_path": cty.NullVal(cty.String), "start_timeout": cty.NullVal(cty.String),
		"stop_timeout": cty.NullVal(cty.String), "backup_root": cty.NullVal(cty.String),
	})
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		perStep, peak := benchRun(b, path, sum, "node_pool.p", src, config, 1, steps)
		b.ReportMetric(perStep, "ms/step")
		b.ReportMetric(peak, "peak-heap-MB")
	}
}

// BenchmarkSpawnTrue is BenchmarkExecTrue500's floor on this machine: 500
// runs of /bin/true started and waited for by Go's os/exec, with no
// upshift, plugin or journal. ExecTrue500's ms/step minus this one's is
// what upshift adds to a command step.
func BenchmarkSpawnTrue(b *testing.B) {
	const steps = 500
	for b.Loop() {
		start := time.Now()
		for range steps {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/steps/1000, "ms/step")
	}
}
