// Command benchtable reads `go test -bench` output on stdin (what make
// bench runs) and prints the figures the project holds itself to as one
// table: each headline benchmark's figure beside its target, the database
// plugins' backup and copy beside the engine's fastest native way, then
// every benchmark's metrics. Figures a run did not include (skipped: no
// ansible-playbook, no haproxy) say so instead of a figure.
package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"
)

// headline is one figure of the table: a metric of a benchmark, how to
// show it, and its target.
type headline struct {
	what string
	// bench is the benchmark's name without its -GOMAXPROCS suffix,
	// sub-benchmark included; "pkg:Name" when packages share the name
	// (pkg is the import path's last element); a trailing * sums every
	// benchmark with that prefix.
	bench     string
	unit      string
	scale     float64 // value * scale is shown
	format    string
	hasTarget bool
	target    float64 // in shown units
	atMost    bool    // the target is a ceiling (else a floor)
	targetStr string
}

var headlines = []headline{
	{what: "exec of /bin/true through the process plugin, per step", bench: "BenchmarkExecTrue500", unit: "ms/step", scale: 1, format: "%.2f ms", hasTarget: true, target: 1.2, atMost: true, targetStr: "<= 1.2 ms"},
	{what: "  of which: spawning /bin/true from Go, no upshift (this machine's floor)", bench: "BenchmarkSpawnTrue", unit: "ms/step", scale: 1, format: "%.2f ms", targetStr: "(reference)"},
	{what: "Ansible command module, per task (same machine)", bench: "BenchmarkAnsibleExecTrue", unit: "ms/step", scale: 1, format: "%.0f ms", targetStr: "(reference; needs ansible-playbook)"},
	{what: "no-op step through testkit, per step (10,000 steps)", bench: "BenchmarkRollout10000", unit: "ms/step", scale: 1, format: "%.3f ms", hasTarget: true, target: 0.3, atMost: true, targetStr: "<= 0.3 ms (10,000 under 3 s)"},
	{what: "10,000 no-op steps, peak heap", bench: "BenchmarkRollout10000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", hasTarget: true, target: 150, atMost: true, targetStr: "<= 150 MB"},
	{what: "run to first step, 3 plugins", bench: "BenchmarkFirstStep", unit: "ms-to-first-step", scale: 1, format: "%.0f ms", hasTarget: true, target: 120, atMost: true, targetStr: "<= 120 ms"},
	{what: "1,000-node SSH rollout (3,000 steps), wall", bench: "BenchmarkSSHRollout1000", unit: "wall-s", scale: 1, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, upshift CPU", bench: "BenchmarkSSHRollout1000", unit: "upshift-cpu-ms", scale: 0.001, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, plugin CPU", bench: "BenchmarkSSHRollout1000", unit: "plugin-cpu-ms", scale: 0.001, format: "%.1f s", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, upshift peak heap", bench: "BenchmarkSSHRollout1000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", targetStr: "(reported)"},
	{what: "1,000-node SSH rollout, plugin peak RSS", bench: "BenchmarkSSHRollout1000", unit: "plugin-rss-MB", scale: 1, format: "%.0f MB", targetStr: "(reported)"},
	{what: "plan and validate of 10,000 nodes, CPU", bench: "BenchmarkPlan10000", unit: "cpu-ms/op", scale: 0.001, format: "%.2f s", hasTarget: true, target: 1, atMost: true, targetStr: "<= 1 s"},
	{what: "plan and validate of 10,000 nodes, peak heap", bench: "BenchmarkPlan10000", unit: "peak-heap-MB", scale: 1, format: "%.0f MB", hasTarget: true, target: 250, atMost: true, targetStr: "<= 250 MB"},
	{what: "lab demo, SQLite: write outage", bench: "BenchmarkDemoWriteOutage/db=sqlite", unit: "outage-s", scale: 1, format: "%.2f s", targetStr: "(reported)"},
	{what: "lab demo, PostgreSQL: write outage", bench: "BenchmarkDemoWriteOutage/db=postgres", unit: "outage-s", scale: 1, format: "%.2f s", targetStr: "(reported)"},
	{what: "lab demo, MariaDB: write outage", bench: "BenchmarkDemoWriteOutage/db=mysql", unit: "outage-s", scale: 1, format: "%.2f s", targetStr: "(reported)"},
	{what: "lab demos: failed requests", bench: "BenchmarkDemoWriteOutage/db=*", unit: "failed-requests", scale: 1, format: "%.0f", hasTarget: true, target: 0, atMost: true, targetStr: "0"},
	{what: "lab demos: acknowledged writes lost", bench: "BenchmarkDemoWriteOutage/db=*", unit: "lost-writes", scale: 1, format: "%.0f", hasTarget: true, target: 0, atMost: true, targetStr: "0"},
}

// dbPair is one database operation of a plugin's BenchmarkBackupAndCopy
// beside the native ways it is measured against (the fastest present is
// the reference; target: within 1.5x of it).
type dbPair struct {
	db, pkg, op, upshift string
	natives              []string
}

var dbPairs = []dbPair{
	{"PostgreSQL", "postgres", "backup", "upshift-backup", []string{"native-pg_dump-Fc"}},
	{"PostgreSQL", "postgres", "copy, no session on A", "upshift-copy-template", []string{"native-create-database-template", "native-create-database-template-file-copy"}},
	{"PostgreSQL", "postgres", "copy, A in use (an upgrade's case)", "upshift-copy-held", []string{"native-pg_dump-psql-held"}},
	{"MariaDB", "mysql", "backup", "upshift-backup", []string{"native-mariadb-dump-fsync"}},
	{"MariaDB", "mysql", "backup vs the dump without fsync (not durable)", "upshift-backup", []string{"native-mariadb-dump"}},
	{"MariaDB", "mysql", "copy", "upshift-copy", []string{"native-mariadb-dump-pipe-mariadb"}},
	{"SQLite", "sqlite", "backup", "upshift-backup", []string{"native-cp-fsync", "native-sqlite3-backup"}},
	{"SQLite", "sqlite", "copy", "upshift-copy", []string{"native-cp-fsync", "native-sqlite3-backup"}},
	{"SQLite", "sqlite", "copy vs cp without fsync (B not durable)", "upshift-copy", []string{"native-cp"}},
}

// result is one benchmark's metrics, the last run of it in the input.
type result struct {
	pkg     string // import path's last element
	name    string
	metrics map[string]float64
	order   []string
}

// results holds the last run of each benchmark, by "pkg:Name".
type results struct {
	byKey map[string]*result
}

func main() {
	rs, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	write(os.Stdout, rs)
}

func read(in io.Reader) (*results, error) {
	rs := &results{byKey: map[string]*result{}}
	r := benchfmt.NewReader(in, "stdin")
	for r.Scan() {
		rec, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		// benchfmt drops the Benchmark prefix and keeps -GOMAXPROCS.
		name := "Benchmark" + string(rec.Name.Full())
		if i := strings.LastIndexByte(name, '-'); i > 0 && name[i+1:] != "" && strings.Trim(name[i+1:], "0123456789") == "" {
			name = name[:i]
		}
		res := &result{pkg: path.Base(rec.GetConfig("pkg")), name: name, metrics: map[string]float64{}}
		for _, v := range rec.Values {
			// As the benchmark printed it (benchfmt tidies peak-heap-MB
			// into peak-heap-B and ns/op into sec/op), except time, kept
			// in seconds.
			unit, val := v.Unit, v.Value
			if v.OrigUnit != "" && v.Unit != "sec/op" {
				unit, val = v.OrigUnit, v.OrigValue
			}
			res.metrics[unit] = val
			res.order = append(res.order, unit)
		}
		rs.byKey[res.pkg+":"+name] = res
	}
	return rs, r.Err()
}

// find returns the benchmarks a headline's bench names.
func (rs *results) find(bench string) []*result {
	if strings.Contains(bench, ":") {
		if r := rs.byKey[bench]; r != nil {
			return []*result{r}
		}
		return nil
	}
	prefix, all := strings.CutSuffix(bench, "*")
	var out []*result
	for _, r := range rs.byKey {
		if r.name == bench || all && strings.HasPrefix(r.name, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// metric is a headline's value: the one benchmark's, or the sum over a
// prefix's.
func (rs *results) metric(bench, unit string) (float64, bool) {
	sum, found := 0.0, false
	for _, r := range rs.find(bench) {
		if v, ok := r.metrics[unit]; ok {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

func write(out io.Writer, rs *results) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FIGURE\tVALUE\tTARGET\t")
	for _, h := range headlines {
		v, ok := rs.metric(h.bench, h.unit)
		if !ok {
			fmt.Fprintf(w, "%s\t(not run)\t%s\t\n", h.what, h.targetStr)
			continue
		}
		shown := v * h.scale
		mark := ""
		if h.hasTarget {
			if (h.atMost && shown <= h.target) || (!h.atMost && shown >= h.target) {
				mark = "met"
			} else {
				mark = "MISSED"
			}
		}
		fmt.Fprintf(w, "%s\t"+h.format+"\t%s %s\t\n", h.what, shown, h.targetStr, mark)
	}
	if a, ok := rs.metric("BenchmarkAnsibleExecTrue", "ms/step"); ok {
		if u, ok := rs.metric("BenchmarkExecTrue500", "ms/step"); ok && u > 0 {
			fmt.Fprintf(w, "Ansible / upshift, per command step\t%.0fx\t(300x aimed)\t\n", a/u)
		}
	}
	w.Flush()

	writeOutageParts(out, rs)
	writeDatabases(out, rs)

	fmt.Fprintln(out, "\nEvery benchmark:")
	keys := make([]string, 0, len(rs.byKey))
	for k := range rs.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, k := range keys {
		res := rs.byKey[k]
		var parts []string
		for _, u := range res.order {
			parts = append(parts, fmt.Sprintf("%.4g %s", res.metrics[u], u))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t\n", res.pkg, res.name, strings.Join(parts, "  "))
	}
	w.Flush()
}

// writeOutageParts shows each lab demo's write-outage window in its parts.
func writeOutageParts(out io.Writer, rs *results) {
	demos := rs.find("BenchmarkDemoWriteOutage/db=*")
	if len(demos) == 0 {
		return
	}
	sort.Slice(demos, func(i, j int) bool { return demos[i].name < demos[j].name })
	fmt.Fprintln(out, "\nLab demo write outage, in parts (seconds; backup and copy run at once, and with the first node's drain):")
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "DATABASE\tWINDOW\tBACKUP\tCOPY\tFIRST NODE'S DRAIN\tFIRST NODE'S STOP TO ENABLE\tWRITES REFUSED\t")
	for _, d := range demos {
		col := func(unit, format string) string {
			if v, ok := d.metrics[unit]; ok {
				return fmt.Sprintf(format, v)
			}
			return "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", strings.TrimPrefix(d.name, "BenchmarkDemoWriteOutage/db="),
			col("outage-s", "%.2f"), col("backup-s", "%.2f"), col("copy-s", "%.2f"), col("drain-s", "%.2f"), col("first-node-s", "%.2f"), col("writes-refused-%", "%.0f%%"))
	}
	w.Flush()
}

// writeDatabases shows each database plugin's backup and copy beside the
// engine's fastest native way, from BenchmarkBackupAndCopy.
func writeDatabases(out io.Writer, rs *results) {
	secs := func(pkg, sub string) (float64, bool) {
		r := rs.byKey[pkg+":BenchmarkBackupAndCopy/"+sub]
		if r == nil {
			return 0, false
		}
		v, ok := r.metrics["sec/op"]
		return v, ok
	}
	var rows []string
	for _, p := range dbPairs {
		u, ok := secs(p.pkg, p.upshift)
		if !ok {
			continue
		}
		best, bestName := 0.0, ""
		for _, n := range p.natives {
			if v, ok := secs(p.pkg, n); ok && (bestName == "" || v < best) {
				best, bestName = v, n
			}
		}
		if bestName == "" {
			rows = append(rows, fmt.Sprintf("%s\t%s\t%.1f s\t(not run)\t\t\t\t", p.db, p.op, u))
			continue
		}
		mark := "met"
		if u/best > 1.5 {
			mark = "MISSED"
		}
		rows = append(rows, fmt.Sprintf("%s\t%s\t%.1f s\t%s\t%.1f s\t%.2f\t<= 1.5 %s\t", p.db, p.op, u, bestName, best, u/best, mark))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(out, "\nDatabase backup and copy (BenchmarkBackupAndCopy; size from UPSHIFT_BENCH_DB_SIZE):")
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "DATABASE\tOPERATION\tUPSHIFT\tFASTEST NATIVE\tNATIVE\tRATIO\tTARGET\t")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	w.Flush()
}
