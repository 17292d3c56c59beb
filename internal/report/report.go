// Package report owns upshift's HTML reports, each one self-contained file
// (inline CSS and SVG only: no script, no network): the demo's (Write: a
// timeline of the upgrade's steps per node from the run's events, the
// traffic during the run with its failures, and the final state), and any
// run's from its journal (WriteRun, for `upshift report`).
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/runner/journal"
)

// Event is the part of a runner JSON event the report uses.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"` // step_started, step_finished, step_failed, step_skipped, ...
	Address  string    `json:"address"`
	Key      string    `json:"key"` // the node, for a step over nodes
	Duration int64     `json:"duration_ns"`
	Error    string    `json:"error"`
}

// ParseEvents reads runner events, one JSON object per line; other lines
// are ignored.
func ParseEvents(r io.Reader) []Event {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "" {
			out = append(out, e)
		}
	}
	return out
}

// Check is one final-state check.
type Check struct {
	What string
	OK   bool
	Got  string
}

// Node is one node's final state.
type Node struct {
	Name    string
	Version string
	InLB    bool // UP and READY in the load balancer
	Healthy bool
}

// Data is everything the report shows.
type Data struct {
	Title string
	// Start and End bound the traffic; the charts span them.
	Start, End time.Time
	// UpgradeStart and UpgradeEnd mark the playbook's run on the charts;
	// zero values draw no mark.
	UpgradeStart, UpgradeEnd time.Time
	Events                   []Event
	Samples                  []traffic.Sample
	Summary                  traffic.Summary
	Nodes                    []Node
	Checks                   []Check
	// WriteOutage is the run's write-outage window as its --json stream
	// reported it; nil draws nothing.
	WriteOutage *journal.Outage
}

type bar struct {
	X, W  float64
	Label string
	Class string
	Title string
}

type row struct {
	Name string
	Bars []bar
}

type second struct {
	X, OKH, ReadOnlyH, FailH float64
	Title                    string
}

type tick struct {
	X     float64
	Label string
}

// width of the charts' time axis, in SVG units.
const width = 1000.0

// Write renders d as one HTML document. The same Data gives the same bytes.
func Write(w io.Writer, d Data) error {
	if d.End.Sub(d.Start) <= 0 {
		d.End = d.Start.Add(time.Second)
	}
	span := d.End.Sub(d.Start).Seconds()
	x := func(t time.Time) float64 { return round(width * t.Sub(d.Start).Seconds() / span) }

	timeline := steps(d.Events, x)
	secs, perSecond := traffic1s(d.Samples, d.Start, x)
	var ticks []tick
	step := max(1, int(span/10))
	for s := 0; float64(s) <= span; s += step {
		ticks = append(ticks, tick{X: x(d.Start.Add(time.Duration(s) * time.Second)), Label: fmt.Sprintf("%ds", s)})
	}
	var marks []tick
	if !d.UpgradeStart.IsZero() {
		marks = append(marks, tick{X: x(d.UpgradeStart), Label: "upgrade starts"})
	}
	if !d.UpgradeEnd.IsZero() {
		marks = append(marks, tick{X: x(d.UpgradeEnd), Label: "upgrade ends"})
	}
	verdict := d.Summary.Clean()
	for _, c := range d.Checks {
		verdict = verdict && c.OK
	}
	return page.Execute(w, map[string]any{
		"D": d, "Rows": timeline, "Secs": secs, "Width": width, "BarW": round(max(width/span-1, 1)),
		"Height": 30*len(timeline) + 25, "Span": fmt.Sprintf("%.1fs", span), "Ticks": ticks, "Marks": marks,
		"MaxPerSecond": perSecond, "Verdict": verdict, "Outage": outageLine(d.WriteOutage),
	})
}

// outageLine is the window in one sentence, "" without one.
func outageLine(o *journal.Outage) string {
	if o == nil {
		return ""
	}
	return o.Line(clock)
}

// steps makes one row for cluster-wide steps, then one per node (by name),
// each with a bar per step from its start to its end.
func steps(events []Event, x func(time.Time) float64) []row {
	rows := map[string]*row{}
	started := map[string]Event{}
	for _, e := range events {
		if !strings.HasPrefix(e.Type, "step_") || e.Address == "" {
			continue
		}
		key := e.Key
		if key == "" {
			key = "cluster"
		}
		if rows[key] == nil {
			rows[key] = &row{Name: key}
		}
		name := strings.TrimPrefix(e.Address, "step.")
		if i := strings.IndexByte(name, '['); i > 0 {
			name = name[:i]
		}
		switch e.Type {
		case "step_started":
			started[e.Address] = e // a retry starts again: the last start counts
		case "step_finished", "step_failed":
			from := e.Time
			if s, ok := started[e.Address]; ok {
				from = s.Time
			} else if e.Duration > 0 {
				from = e.Time.Add(-time.Duration(e.Duration))
			}
			b := bar{X: x(from), W: round(max(x(e.Time)-x(from), 2)), Label: name, Class: "ok",
				Title: fmt.Sprintf("%s: %s", e.Address, time.Duration(e.Duration).Round(time.Millisecond))}
			if e.Type == "step_failed" {
				b.Class, b.Title = "fail", b.Title+": "+e.Error
			}
			rows[key].Bars = append(rows[key].Bars, b)
		case "step_skipped":
			rows[key].Bars = append(rows[key].Bars, bar{X: x(e.Time), W: 2, Class: "skip", Title: e.Address + ": skipped"})
		}
	}
	var names []string
	for k := range rows {
		if k != "cluster" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if rows["cluster"] != nil {
		names = append([]string{"cluster"}, names...)
	}
	out := make([]row, 0, len(names))
	for _, k := range names {
		out = append(out, *rows[k])
	}
	return out
}

// traffic1s counts requests per second, stacked: ok, clean read-only
// refusals, failures. Failures are drawn from the top, in red, so that a
// single one stands out.
func traffic1s(samples []traffic.Sample, start time.Time, x func(time.Time) float64) ([]second, int) {
	buckets := map[int]*[3]int{}
	maxN := 1
	for _, s := range samples {
		i := int(s.At.Sub(start).Seconds())
		if buckets[i] == nil {
			buckets[i] = &[3]int{}
		}
		switch {
		case s.OK():
			buckets[i][0]++
		case s.ReadOnly:
			buckets[i][1]++
		default:
			buckets[i][2]++
		}
		maxN = max(maxN, buckets[i][0]+buckets[i][1]+buckets[i][2])
	}
	h := func(n int) float64 {
		if n == 0 {
			return 0
		}
		return round(max(100*float64(n)/float64(maxN), 3)) // a lone failure stays visible
	}
	var secs []second
	for i, b := range buckets {
		secs = append(secs, second{X: x(start.Add(time.Duration(i) * time.Second)), OKH: h(b[0]), ReadOnlyH: h(b[1]), FailH: h(b[2]),
			Title: fmt.Sprintf("second %d: %d ok, %d read-only refusals, %d failed", i, b[0], b[1], b[2])})
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i].X < secs[j].X })
	return secs, maxN
}

// round keeps two decimals, so the SVG is short and stable.
func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"y":   func(i int) int { return 30*i + 5 },
	"sub": func(a, b float64) float64 { return round(a - b) },
	"ms":  func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.D.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
.ok{fill:#4c9a2a}.fail,.reqfail{fill:#c0392b}.skip{fill:#999}.ro{fill:#e6a817}.req{fill:#7aa6d6}
.pass{color:#2e7d32}.bad{color:#c0392b;font-weight:bold}
.mark{stroke:#555;stroke-dasharray:4 3}.axis{fill:#555;font-size:10px}
svg text{font-size:10px;fill:#fff}svg .name{fill:#222;font-size:12px}svg .axis{fill:#555}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em;vertical-align:middle}
</style></head><body>
<h1>{{.D.Title}}</h1>
<p>{{.D.Start.Format "2006-01-02 15:04:05 MST"}}, {{.Span}} of traffic. Verdict: {{if .Verdict}}<strong class="pass">zero failed requests, zero lost writes, final state as expected</strong>{{else}}<strong class="bad">FAILED</strong>{{end}}.</p>
{{with .Outage}}<p>Write outage: {{.}}.</p>
{{end}}<h2>Traffic</h2>
<table>
<tr><td>Requests</td><td>{{.D.Summary.Requests}}</td></tr>
<tr><td>Reads</td><td>{{.D.Summary.Reads}} sent ({{.D.Summary.SlowReads}} slow, {{.D.Summary.FastReads}} fast), <span class="{{if .D.Summary.ReadsFailed}}bad{{else}}pass{{end}}">{{.D.Summary.ReadsFailed}} failed</span></td></tr>
<tr><td>Writes</td><td>{{.D.Summary.WritesAcked}} acknowledged, {{.D.Summary.WritesReadOnly}} refused cleanly while read-only, <span class="{{if .D.Summary.WritesFailed}}bad{{else}}pass{{end}}">{{.D.Summary.WritesFailed}} failed otherwise</span></td></tr>
<tr><td>Acknowledged writes lost</td><td><span class="{{if .D.Summary.LostWrites}}bad{{else}}pass{{end}}">{{.D.Summary.LostWrites}}</span></td></tr>
<tr><td>Latency (fast requests)</td><td>p50 {{ms .D.Summary.P50Before}} / p99 {{ms .D.Summary.P99Before}} before; p50 {{ms .D.Summary.P50During}} / p99 {{ms .D.Summary.P99During}} during</td></tr>
</table>
{{with .D.Summary.Failures}}<p>First failures:</p><table>{{range .}}<tr><td>{{.At.Format "15:04:05.000"}}</td><td>{{.Kind}}</td><td>{{.ID}}</td><td>{{if .Err}}{{.Err}}{{else}}HTTP {{.Status}}{{end}}</td><td>{{.Node}}</td></tr>{{end}}</table>{{end}}
<h2>Steps per node</h2>
<svg width="{{.Width}}" height="{{.Height}}" viewBox="-90 0 {{.Width}} {{.Height}}" style="overflow:visible">
{{range $i, $r := .Rows}}<text class="name" x="-85" y="{{y $i}}" dy="14">{{$r.Name}}</text>
{{range $r.Bars}}<g><title>{{.Title}}</title><rect class="{{.Class}}" x="{{.X}}" y="{{y $i}}" width="{{.W}}" height="22"></rect>{{if .Label}}<text x="{{.X}}" y="{{y $i}}" dx="2" dy="14">{{.Label}}</text>{{end}}</g>
{{end}}{{end}}{{range .Marks}}<line class="mark" x1="{{.X}}" x2="{{.X}}" y1="0" y2="{{$.Height}}"></line>
{{end}}{{range .Ticks}}<text class="axis" x="{{.X}}" y="{{$.Height}}">{{.Label}}</text>
{{end}}</svg>
<h2>Requests per second</h2>
<p class="legend"><span style="background:#7aa6d6"></span>ok<span style="background:#e6a817"></span>writes refused cleanly (read-only)<span style="background:#c0392b"></span>failed (from the top); at most {{.MaxPerSecond}} per second</p>
<svg width="{{.Width}}" height="125">
{{range .Secs}}<g><title>{{.Title}}</title>{{if .OKH}}<rect class="req" x="{{.X}}" y="{{sub 105.0 .OKH}}" width="{{$.BarW}}" height="{{.OKH}}"></rect>{{end}}{{if .ReadOnlyH}}<rect class="ro" x="{{.X}}" y="{{sub (sub 105.0 .OKH) .ReadOnlyH}}" width="{{$.BarW}}" height="{{.ReadOnlyH}}"></rect>{{end}}{{if .FailH}}<rect class="reqfail" x="{{.X}}" y="0" width="{{$.BarW}}" height="{{.FailH}}"></rect>{{end}}</g>
{{end}}{{range .Marks}}<line class="mark" x1="{{.X}}" x2="{{.X}}" y1="0" y2="105"><title>{{.Label}}</title></line>
{{end}}{{range .Ticks}}<text class="axis" x="{{.X}}" y="120">{{.Label}}</text>
{{end}}</svg>
<h2>Final state</h2>
{{with .D.Nodes}}<table><tr><th>Node</th><th>Version</th><th>In the load balancer</th><th>Healthy</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{if .Version}}{{.Version}}{{else}}<span class="bad">?</span>{{end}}</td><td class="{{if .InLB}}pass{{else}}bad{{end}}">{{if .InLB}}yes{{else}}no{{end}}</td><td class="{{if .Healthy}}pass{{else}}bad{{end}}">{{if .Healthy}}yes{{else}}no{{end}}</td></tr>
{{end}}</table>{{end}}
<table>{{range .D.Checks}}<tr><td>{{.What}}</td><td class="{{if .OK}}pass{{else}}bad{{end}}">{{if .OK}}ok{{else}}FAILED{{end}}</td><td>{{.Got}}</td></tr>
{{end}}</table>
</body></html>
`))
