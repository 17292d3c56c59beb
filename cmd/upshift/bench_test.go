package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// BenchmarkDemoWriteOutage runs the lab demo (3 platformd nodes behind
// HAProxy, live traffic, the shipped playbook) once per database kind and
// reports its write-outage window as `upshift status --json` gives it:
// the whole window (outage-s: from read-only until the first node on the
// new version takes writes) and its parts (backup-s, copy-s, drain-s: the
// first node's drain, which the shipped playbook runs with them;
// first-node-s: that node's stop to enable), beside the traffic's failed
// requests and the share of writes refused while read-only. The lab's
// databases hold a few rows: backup and copy of a real database are the
// BackupAndCopy benchmarks of each database plugin.
func BenchmarkDemoWriteOutage(b *testing.B) {
	if binDir == "" {
		b.Skip("needs the binaries TestMain builds; skipped with -short")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		b.Skip("haproxy is not installed: run .ci/setup")
	}
	shipped, err := filepath.Abs(shippedPlaybook)
	if err != nil {
		b.Fatal(err)
	}
	for _, db := range []string{"sqlite", "postgres", "mysql"} {
		b.Run("db="+db, func(b *testing.B) {
			for b.Loop() {
				demoOutage(b, shipped, db)
			}
		})
	}
}

func demoOutage(b *testing.B, playbook, db string) {
	dir := filepath.Join(b.TempDir(), "lab")
	bin := filepath.Join(binDir, "upshift")
	defer func() { _ = exec.Command(bin, "lab", "down", "--dir", dir).Run() }()
	out, err := exec.Command(bin, "lab", "demo", "--dir", dir, "--db", db, "--playbook", playbook, "--warmup", "1500ms").CombinedOutput()
	if err != nil {
		b.Fatalf("lab demo --db %s: %v\n%s", db, err, out)
	}
	js, err := exec.Command(bin, "status", "--json", filepath.Join(dir, "playbook")).Output()
	if err != nil {
		b.Fatalf("status --json: %v\n%s", err, js)
	}
	var st struct {
		Clusters []struct {
			WriteOutage *struct {
				State      string `json:"state"`
				DurationNs int64  `json:"duration_ns"`
				Parts      []struct {
					Name       string `json:"name"`
					DurationNs int64  `json:"duration_ns"`
				} `json:"parts"`
			} `json:"write_outage"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal(js, &st); err != nil {
		b.Fatalf("status --json: %v\n%s", err, js)
	}
	if len(st.Clusters) != 1 || st.Clusters[0].WriteOutage == nil || st.Clusters[0].WriteOutage.State != "closed" {
		b.Fatalf("status --json has no closed write-outage window:\n%s", js)
	}
	o := st.Clusters[0].WriteOutage
	b.ReportMetric(float64(o.DurationNs)/1e9, "outage-s")
	for _, p := range o.Parts {
		var unit string
		switch {
		case p.Name == "backup", p.Name == "copy":
			unit = p.Name + "-s"
		case strings.HasPrefix(p.Name, "first item's drain"):
			unit = "drain-s"
		case strings.HasPrefix(p.Name, "first item's stop to enable"):
			unit = "first-node-s"
		default:
			b.Fatalf("unknown part of the write outage %q", p.Name)
		}
		b.ReportMetric(float64(p.DurationNs)/1e9, unit)
	}
	text := string(out)
	r, w, l := readsRE.FindStringSubmatch(text), writesRE.FindStringSubmatch(text), lostRE.FindStringSubmatch(text)
	if r == nil || w == nil || l == nil {
		b.Fatalf("the demo's traffic figures are missing:\n%s", text)
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	b.ReportMetric(num(r[2])+num(w[3]), "failed-requests")
	b.ReportMetric(num(l[1]), "lost-writes")
	if total := num(w[1]) + num(w[2]) + num(w[3]); total > 0 {
		b.ReportMetric(100*num(w[2])/total, "writes-refused-%")
	}
}
