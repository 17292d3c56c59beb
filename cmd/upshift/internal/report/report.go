// Package report owns the demo's HTML report: one self-contained file with
// a timeline of the upgrade's steps per node, the traffic during the run
// with its failures, and the final state. No scripts, no network.
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

	"github.com/upshift-dev/upshift/cmd/upshift/internal/traffic"
)

// Event is the part of a runner JSON event the report uses.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Address  string    `json:"address"`
	Key      string    `json:"key"`
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

// Data is everything the report shows.
type Data struct {
	Title   string
	Start   time.Time
	End     time.Time
	Events  []Event
	Samples []traffic.Sample
	Summary traffic.Summary
	Checks  []Check
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

// Write renders d as one HTML document.
func Write(w io.Writer, d Data) error {
	if d.End.Sub(d.Start) <= 0 {
		d.End = d.Start.Add(time.Second)
	}
	const width = 1000.0
	span := d.End.Sub(d.Start).Seconds()
	x := func(t time.Time) float64 { return width * t.Sub(d.Start).Seconds() / span }

	rows := map[string]*row{}
	var order []string
	started := map[string]Event{}
	for _, e := range d.Events {
		key := e.Key
		if key == "" {
			key = "cluster"
		}
		if _, ok := rows[key]; !ok {
			rows[key] = &row{Name: key}
			order = append(order, key)
		}
		switch e.Type {
		case "step_started":
			started[e.Address] = e
		case "step_finished", "step_failed":
			s, ok := started[e.Address]
			if !ok {
				continue
			}
			step := strings.TrimPrefix(e.Address, "step.")
			if i := strings.IndexByte(step, '['); i > 0 {
				step = step[:i]
			}
			class := "ok"
			title := fmt.Sprintf("%s: %s", e.Address, time.Duration(e.Duration).Round(time.Millisecond))
			if e.Type == "step_failed" {
				class, title = "fail", title+": "+e.Error
			}
			rows[key].Bars = append(rows[key].Bars, bar{X: x(s.Time), W: max(x(e.Time)-x(s.Time), 2), Label: step, Class: class, Title: title})
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i] == "cluster" && order[j] != "cluster" })
	var timeline []row
	for _, k := range order {
		timeline = append(timeline, *rows[k])
	}

	// Requests per second, stacked: ok, clean read-only refusals, failures.
	buckets := map[int]*[3]int{}
	maxN := 1
	for _, s := range d.Samples {
		i := int(s.At.Sub(d.Start).Seconds())
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
	var secs []second
	for i, b := range buckets {
		h := func(n int) float64 { return 100 * float64(n) / float64(maxN) }
		secs = append(secs, second{X: x(d.Start.Add(time.Duration(i) * time.Second)), OKH: h(b[0]), ReadOnlyH: h(b[1]), FailH: h(b[2]),
			Title: fmt.Sprintf("second %d: %d ok, %d read-only refusals, %d failed", i, b[0], b[1], b[2])})
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i].X < secs[j].X })

	return page.Execute(w, map[string]any{
		"D": d, "Rows": timeline, "Secs": secs, "Width": width, "BarW": max(width/span-1, 1),
		"Height": 30*len(timeline) + 10, "Span": fmt.Sprintf("%.1fs", span),
	})
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"y":   func(i int) int { return 30*i + 5 },
	"sub": func(a, b float64) float64 { return a - b },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.D.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
.ok{fill:#4c9a2a}.fail{fill:#c0392b}.ro{fill:#e6a817}.req{fill:#7aa6d6}
.pass{color:#2e7d32}.bad{color:#c0392b;font-weight:bold}
svg text{font-size:10px;fill:#fff}svg .name{fill:#222;font-size:12px}
</style></head><body>
<h1>{{.D.Title}}</h1>
<p>{{.D.Start.Format "2006-01-02 15:04:05"}}, {{.Span}} of traffic.</p>
<h2>Verdict</h2>
<table>
<tr><td>Reads</td><td>{{.D.Summary.Reads}} sent, <span class="{{if .D.Summary.ReadsFailed}}bad{{else}}pass{{end}}">{{.D.Summary.ReadsFailed}} failed</span></td></tr>
<tr><td>Writes</td><td>{{.D.Summary.WritesAcked}} acknowledged, {{.D.Summary.WritesReadOnly}} refused cleanly while read-only, <span class="{{if .D.Summary.WritesFailed}}bad{{else}}pass{{end}}">{{.D.Summary.WritesFailed}} failed otherwise</span></td></tr>
<tr><td>Acknowledged writes lost</td><td><span class="{{if .D.Summary.LostWrites}}bad{{else}}pass{{end}}">{{.D.Summary.LostWrites}}</span></td></tr>
<tr><td>Latency (fast requests)</td><td>p50 {{.D.Summary.P50Before}} / p99 {{.D.Summary.P99Before}} before; p50 {{.D.Summary.P50During}} / p99 {{.D.Summary.P99During}} during</td></tr>
</table>
<h2>Steps per node</h2>
<svg width="{{.Width}}" height="{{.Height}}" viewBox="-90 0 {{.Width}} {{.Height}}" style="overflow:visible">
{{range $i, $r := .Rows}}<text class="name" x="-85" y="{{y $i | printf "%d"}}" dy="14">{{$r.Name}}</text>
{{range $r.Bars}}<g><title>{{.Title}}</title><rect class="{{.Class}}" x="{{.X}}" y="{{y $i}}" width="{{.W}}" height="22"></rect><text x="{{.X}}" y="{{y $i}}" dx="2" dy="14">{{.Label}}</text></g>
{{end}}{{end}}</svg>
<h2>Traffic (requests per second: blue ok, amber read-only refusals, red failures)</h2>
<svg width="{{.Width}}" height="110">
{{range .Secs}}<g><title>{{.Title}}</title><rect class="req" x="{{.X}}" y="{{sub 105.0 .OKH}}" width="{{$.BarW}}" height="{{.OKH}}"></rect><rect class="ro" x="{{.X}}" y="{{sub (sub 105.0 .OKH) .ReadOnlyH}}" width="{{$.BarW}}" height="{{.ReadOnlyH}}"></rect><rect class="fail" x="{{.X}}" y="0" width="{{$.BarW}}" height="{{.FailH}}"></rect></g>
{{end}}</svg>
<h2>Final state</h2>
<table>{{range .D.Checks}}<tr><td>{{.What}}</td><td class="{{if .OK}}pass{{else}}bad{{end}}">{{if .OK}}ok{{else}}FAILED{{end}}</td><td>{{.Got}}</td></tr>{{end}}</table>
</body></html>
`))
