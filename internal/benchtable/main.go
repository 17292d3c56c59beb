// Command benchtable reads `go test -bench` output on stdin (what make
// bench runs) and prints the figures the project holds itself to as one
// table: each headline benchmark's figure beside its target, then every
// benchmark's metrics. Headlines a run did not include (skipped: no
// ansible-playbook, no root for sshd) say so instead of a figure.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"
)

// headline is one figure of the table: the metric unit of a benchmark
// (name without the -GOMAXPROCS suffix), how to show it, and its target.
type headline struct {
	what      string
	bench     string
	unit      string
	scale     float64 // value * scale is shown
	format    string
	target    float64 // in shown units; 0: none
	atMost    bool    // the target is a ceiling (else a floor)
	targetStr string
}

var headlines = []headline{
	{what: "exec of /bin/true through the process plugin, per step", bench: "BenchmarkExecTrue500", unit: "ms/step", scale: 1, format: "%.2f ms", target: 1.2, atMost: true, targetStr: "<= 1.2 ms"},
	{what: "Ansible command module, per task (same machine)", bench: "BenchmarkAnsibleExecTrue", unit: "ms/step", scale: 1, format: "%.0f ms", targetStr: "(reference)"},
	{what: "no-op step through testkit, per step (10,000 steps)", bench: "BenchmarkRollout10000", unit: "ms/step", scale: 1, format: "%.3f ms", target: 0.3, atMost: true, targetStr: "<= 0.3 ms (10,000 under 3 s)"},
	{what: "10,000 no-op steps, peak heap", bench: "BenchmarkRollout10000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", target: 150, atMost: true, targetStr: "<= 150 MB"},
	{what: "run to first step, 3 plugins", bench: "BenchmarkFirstStep", unit: "ms-to-first-step", scale: 1, format: "%.0f ms", target: 120, atMost: true, targetStr: "<= 120 ms"},
	{what: "1,000-node SSH rollout (3,000 steps), wall", bench: "BenchmarkSSHRollout1000", unit: "wall-s", scale: 1, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, upshift CPU", bench: "BenchmarkSSHRollout1000", unit: "upshift-cpu-ms", scale: 0.001, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, plugin CPU", bench: "BenchmarkSSHRollout1000", unit: "plugin-cpu-ms", scale: 0.001, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, upshift peak heap / plugin RSS", bench: "BenchmarkSSHRollout1000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", targetStr: "(reported)"},
	{what: "plan and validate of 10,000 nodes, CPU", bench: "BenchmarkPlan10000", unit: "cpu-ms/op", scale: 0.001, format: "%.2f s", target: 1, atMost: true, targetStr: "<= 1 s"},
	{what: "plan and validate of 10,000 nodes, peak heap", bench: "BenchmarkPlan10000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", target: 250, atMost: true, targetStr: "<= 250 MB"},
}

// result is one benchmark's metrics, the last run of it in the input.
type result struct {
	pkg     string
	name    string
	metrics map[string]float64
	order   []string
}

func main() {
	results, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	write(os.Stdout, results)
}

func read(in io.Reader) (map[string]*result, error) {
	out := map[string]*result{}
	r := benchfmt.NewReader(in, "stdin")
	for r.Scan() {
		rec, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		name := string(rec.Name.Full())
		pkg := rec.GetConfig("pkg")
		res := &result{pkg: pkg, name: name, metrics: map[string]float64{}}
		for _, v := range rec.Values {
			res.metrics[v.Unit] = v.Value
			res.order = append(res.order, v.Unit)
		}
		out[name] = res
	}
	return out, r.Err()
}

func write(out io.Writer, results map[string]*result) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FIGURE\tVALUE\tTARGET\t")
	for _, h := range headlines {
		res := results[h.bench]
		v, ok := 0.0, false
		if res != nil {
			v, ok = res.metrics[h.unit]
		}
		if !ok {
			fmt.Fprintf(w, "%s\t(not run)\t%s\t\n", h.what, h.targetStr)
			continue
		}
		shown := v * h.scale
		mark := ""
		if h.target > 0 {
			if (h.atMost && shown <= h.target) || (!h.atMost && shown >= h.target) {
				mark = "met"
			} else {
				mark = "MISSED"
			}
		}
		fmt.Fprintf(w, "%s\t"+h.format+"\t%s %s\t\n", h.what, shown, h.targetStr, mark)
	}
	if a, u := results["BenchmarkAnsibleExecTrue"], results["BenchmarkExecTrue500"]; a != nil && u != nil && u.metrics["ms/step"] > 0 {
		fmt.Fprintf(w, "Ansible / upshift, per command step\t%.0fx\t(300x aimed)\t\n", a.metrics["ms/step"]/u.metrics["ms/step"])
	}
	w.Flush()

	fmt.Fprintln(out, "\nEvery benchmark:")
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, n := range names {
		res := results[n]
		var parts []string
		for _, u := range res.order {
			parts = append(parts, fmt.Sprintf("%.4g %s", res.metrics[u], u))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t\n", strings.TrimPrefix(res.pkg, "github.com/upshift-dev/upshift/"), n, strings.Join(parts, "  "))
	}
	w.Flush()
}
