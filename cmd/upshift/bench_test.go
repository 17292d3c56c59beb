package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFirstStep is the time from starting `upshift run` to its first
// step starting (the step_started event of --json), for a playbook with
// three resources, so three plugin processes to verify, launch, ask for
// their schemas and configure, and a journal to open (target: 120 ms).
func BenchmarkFirstStep(b *testing.B) {
	if binDir == "" {
		b.Skip("needs the binaries TestMain builds; skipped with -short")
	}
	dir := b.TempDir()
	src := ""
	for _, name := range []string{"a", "b", "c"} {
		src += `
node_pool "` + name + `" {
  plugin = "testkit"
  nodes  = [{ name = "n1" }]
}
step "` + name + `" {
  run = node_pool.` + name + `.noop
}
`
	}
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	upshiftBin := filepath.Join(binDir, "upshift")
	if out, err := exec.Command(upshiftBin, "init", dir).CombinedOutput(); err != nil {
		b.Fatalf("init: %v\n%s", err, out)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(upshiftBin, "run", dir, "--json", "--auto-approve", "--state-dir", filepath.Join(b.TempDir(), "state"))
		cmd.Env = append(os.Environ(), "NO_COLOR=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var first time.Duration
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e struct {
				Type    string `json:"type"`
				Address string `json:"address"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "step_started" && first == 0 {
				first = time.Since(start)
			}
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("run: %v", err)
		}
		if first == 0 {
			b.Fatal("no step_started event")
		}
		total += first
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-first-step")
}
