package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/runner/journal"
)

// RunData is what the report of one run (WriteRun) shows: the run as its
// journal keeps it, and the lab's traffic when there was some.
type RunData struct {
	Title string
	Run   *journal.Run
	// Traffic is the lab's requests during the run (its traffic.json);
	// nil when the run was not a lab's.
	Traffic []traffic.Sample
	// Now ends the bars of steps still running (a run that did not
	// finish); zero: the run's last update.
	Now time.Time
}

// Metrics are the report's geometry, for checking its legibility without
// a browser: the timeline's size, its row height, the smallest font used,
// and whether any two step labels overlap.
type Metrics struct {
	Rows          int
	RowHeight     int
	Width, Height int // of the timeline's SVG, in CSS pixels
	MinFontPx     float64
	Labels        int // step labels drawn inside their bars
	LabelsOverlap bool
}

// Geometry, in CSS pixels: the timeline and the traffic chart share the
// gutter and the plot width, so their time axes line up.
const (
	gutter    = 150.0
	plotW     = 1000.0
	labelFont = 11.0
	nameFont  = 12.0
	axisFont  = 11.0
	charW     = 0.62 // average glyph width per px of font size (system-ui, monospace digits)
)

type runBar struct {
	X, W, Y, H float64
	Class      string
	Color      string
	Label      string
	Title      string
}

type runRow struct {
	Name  string
	Y     float64
	Title string
}

type axisTick struct {
	X     float64
	Label string
}

type rateBar struct {
	X, W, Y, H float64
	Class      string
	Title      string
}

type nodeSummary struct {
	Name, Steps, Outcome, Took, Slowest string
	Bad                                 bool
	Class                               string // pass, bad, or none for a node not done
}

type legendItem struct{ Name, Color, Class string }

// stepColors tell the steps of a node apart when a bar is too narrow for
// its label (at 50 nodes most are): one colour per step name, the legend
// names them.
var stepColors = []string{"#4c78a8", "#59a14f", "#9c755f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#bab0ac", "#86bcb6", "#8cd17d", "#d4a6c8", "#a0cbe8"}

// WriteRun renders the report of a run from its journal: who ran it, where
// and with what; per node (and for the cluster-wide steps) each step's bar
// with its duration and outcome, gates and waits marked; under it, on the
// same time axis, the load balancer's requests and errors per second (the
// guard's samples) and the lab's traffic. Self-contained: inline CSS and
// SVG, no script, no network. The same data gives the same bytes.
func WriteRun(w io.Writer, d RunData) (Metrics, error) {
	r := d.Run
	if r == nil {
		return Metrics{}, fmt.Errorf("report: no run")
	}
	start, end := runSpan(r, d.Now)
	span := end.Sub(start).Seconds()
	x := func(t time.Time) float64 { return round(gutter + plotW*t.Sub(start).Seconds()/span) }

	rows := runRows(r)
	rowH := 24.0
	if len(rows) > 12 {
		rowH = 18
	}
	m := Metrics{Rows: len(rows), RowHeight: int(rowH), MinFontPx: math.Min(labelFont, math.Min(nameFont, axisFont))}
	colors := map[string]string{}
	var legend []legendItem
	colorOf := func(step string) string {
		if c, ok := colors[step]; ok {
			return c
		}
		c := stepColors[len(colors)%len(stepColors)]
		colors[step] = c
		legend = append(legend, legendItem{Name: step, Color: c})
		return c
	}
	top := 24.0 // room for the outage band's label
	var bars, rowLabels []runBar
	var rrows []runRow
	var summaries []nodeSummary
	for i, row := range rows {
		y := top + float64(i)*rowH
		rrows = append(rrows, runRow{Name: clipName(row.name, gutter-10, nameFont), Y: y + rowH/2 + nameFont*0.35, Title: row.name})
		var labels [][2]float64
		ns := nodeSummary{Name: row.name}
		done, total := 0, 0
		var first, last time.Time
		var slowD time.Duration
		for _, s := range row.steps {
			total++
			name := stepName(s.Address)
			if s.StartedAt.IsZero() {
				continue
			}
			to := s.EndedAt
			if to.IsZero() {
				to = end
			}
			if first.IsZero() || s.StartedAt.Before(first) {
				first = s.StartedAt
			}
			if to.After(last) {
				last = to
			}
			dur := to.Sub(s.StartedAt)
			b := runBar{X: x(s.StartedAt), Y: y + 2, H: rowH - 4, Class: string(s.Status)}
			b.W = round(math.Max(x(to)-b.X, 2))
			b.Title = fmt.Sprintf("%s (%s): %s, %s", s.Address, s.Action, s.Status, dur.Round(time.Millisecond))
			if s.Attempts > 1 {
				b.Title += fmt.Sprintf(", %d attempts", s.Attempts)
			}
			if s.Error != "" {
				b.Title += "\n" + s.Error
			}
			if s.Note != "" {
				b.Title += "\n" + s.Note
			}
			switch {
			case isGate(s):
				b.Class = "gate"
			case s.Status == journal.Done || s.Status == journal.Running:
				b.Color = colorOf(name)
				if isWait(s.Action) {
					b.Class += " wait"
				}
			}
			if s.Status == journal.Done || s.Status == journal.Skipped {
				done++
			}
			if s.Status == journal.Failed {
				ns.Outcome, ns.Bad = "FAILED at "+name, true
			}
			if dur > slowD && !isGate(s) {
				slowD, ns.Slowest = dur, fmt.Sprintf("%s %s", name, shortDuration(dur))
			}
			// A label goes inside its bar when it fits; bars of a row
			// never overlap in time, so neither do their labels.
			if lw := float64(len(name))*labelFont*charW + 6; b.W >= lw {
				b.Label = name
				labels = append(labels, [2]float64{b.X + 3, b.X + 3 + lw - 6})
			}
			bars = append(bars, b)
		}
		ns.Steps = fmt.Sprintf("%d/%d", done, total)
		switch {
		case ns.Bad:
			ns.Class = "bad"
		case done < total:
			ns.Outcome = fmt.Sprintf("%d not done", total-done)
		default:
			ns.Outcome, ns.Class = "done", "pass"
		}
		ns.Took = "-"
		if !first.IsZero() {
			ns.Took = shortDuration(last.Sub(first))
			// The row's own label, in the free space after its last bar
			// (or before its first): readable when the bars are too
			// narrow for theirs, as at 50 nodes.
			text := ns.Took
			if ns.Bad || done < total {
				text += " " + ns.Outcome
			}
			lw := float64(len(text)) * labelFont * charW
			from, to := x(first), x(last)
			lx, anchor := to+4, "start"
			if lx+lw > gutter+plotW+15 {
				lx, anchor = from-4, "end"
			}
			if anchor == "start" || lx-lw >= gutter {
				rowLabels = append(rowLabels, runBar{X: round(lx), Y: round(y + rowH/2 + labelFont*0.35), Label: text, Class: anchor})
				if anchor == "end" {
					labels = append(labels, [2]float64{lx - lw, lx})
				} else {
					labels = append(labels, [2]float64{lx, lx + lw})
				}
			}
		}
		m.Labels += len(labels)
		if overlapping(labels) {
			m.LabelsOverlap = true
		}
		if ns.Slowest == "" {
			ns.Slowest = "-"
		}
		summaries = append(summaries, ns)
	}
	plotH := top + float64(len(rows))*rowH
	ticks := timeTicks(span, x, start)

	// The write outage: from read-only to the first upgraded node taking
	// writes, shaded across the timeline.
	var outage *runBar
	outageLine := ""
	if o := r.WriteOutage(); o != nil {
		// The whole window in words, with its parts, whatever became of
		// it (a run returned to its start undid read-only instead).
		outageLine = o.Line(clock)
		to := o.To
		label := "writes refused "
		switch o.State() {
		case journal.OutageReturned:
			to = o.Reopened
			label = "read-only, then undone: "
		case journal.OutageOpen:
			to = end
			label = "writes refused (not over) "
		}
		if !o.From.IsZero() {
			outage = &runBar{X: x(o.From), W: round(math.Max(x(to)-x(o.From), 1)), Y: top, H: plotH - top,
				Title: outageLine, Label: label + shortDuration(to.Sub(o.From))}
		}
	}

	// Under the timeline: the load balancer's rates and the lab's traffic,
	// each 90 px high, on the same x.
	const chartH = 90.0
	var lbBars []rateBar
	rates := r.Rates()
	maxRate := 1.0
	for _, rt := range rates {
		maxRate = math.Max(maxRate, rt.Requests)
	}
	lbTop := plotH + 30
	for _, rt := range rates {
		bx, bw := x(rt.From), round(math.Max(x(rt.To)-x(rt.From)-0.5, 1))
		h := round(chartH * rt.Requests / maxRate)
		lbBars = append(lbBars, rateBar{X: bx, W: bw, Y: lbTop + chartH - h, H: h, Class: "req",
			Title: fmt.Sprintf("%s to %s: %.1f requests/s, %.2f errors/s", rt.From.Format("15:04:05"), rt.To.Format("15:04:05"), rt.Requests, rt.Errors)})
		if rt.Errors > 0 {
			eh := round(math.Max(chartH*rt.Errors/maxRate, 3))
			lbBars = append(lbBars, rateBar{X: bx, W: bw, Y: lbTop, H: eh, Class: "err", Title: fmt.Sprintf("%.2f errors/s", rt.Errors)})
		}
	}
	labTop := lbTop
	if len(lbBars) > 0 {
		labTop += chartH + 30
	}
	var labBars []rateBar
	var labFailed, labMax int
	if len(d.Traffic) > 0 {
		secs, maxN := trafficSeconds(d.Traffic, start, end)
		labMax = maxN
		for _, s := range secs {
			at := start.Add(time.Duration(s.i) * time.Second)
			bx, bw := x(at), round(math.Max(plotW/span-0.5, 1))
			okH := round(chartH * float64(s.ok) / float64(maxN))
			roH := round(chartH * float64(s.ro) / float64(maxN))
			title := fmt.Sprintf("%s: %d ok, %d writes refused while read-only, %d failed", at.Format("15:04:05"), s.ok, s.ro, s.fail)
			if okH > 0 {
				labBars = append(labBars, rateBar{X: bx, W: bw, Y: labTop + chartH - okH, H: okH, Class: "req", Title: title})
			}
			if roH > 0 {
				labBars = append(labBars, rateBar{X: bx, W: bw, Y: labTop + chartH - okH - roH, H: roH, Class: "ro", Title: title})
			}
			if s.fail > 0 {
				labFailed += s.fail
				labBars = append(labBars, rateBar{X: bx, W: bw, Y: labTop, H: round(math.Max(chartH*float64(s.fail)/float64(maxN), 3)), Class: "err", Title: title})
			}
		}
	}
	height := plotH + 24
	if len(lbBars) > 0 {
		height = lbTop + chartH + 24
	}
	if len(labBars) > 0 {
		height = labTop + chartH + 24
	}
	m.Width, m.Height = int(gutter+plotW+20), int(math.Ceil(height))

	var gates []journal.Step
	for _, s := range sortedSteps(r) {
		if isGate(s) {
			gates = append(gates, *s)
		}
	}
	var failed []journal.Step
	for _, s := range sortedSteps(r) {
		if s.Status == journal.Failed {
			failed = append(failed, *s)
		}
	}
	title := d.Title
	if title == "" {
		title = "upshift run " + r.ID
	}
	err := runPage.Execute(w, map[string]any{
		"Title": title, "R": r, "Audit": r.Audit, "Digest": shortDigest(r.Digest),
		"Start": start, "Took": shortDuration(end.Sub(start)),
		"Rows": rrows, "Bars": bars, "RowLabels": rowLabels, "Ticks": ticks, "PlotH": plotH, "Top": top, "Outage": outage, "OutageLine": outageLine,
		"LBBars": lbBars, "LBTop": lbTop, "MaxRate": fmt.Sprintf("%.0f", maxRate), "LabBars": labBars, "LabTop": labTop, "LabFailed": labFailed, "LabMax": labMax,
		"ChartH": chartH, "W": m.Width, "H": m.Height, "Gutter": gutter, "PlotW": plotW, "Legend": legend,
		"Nodes": summaries, "Gates": gates, "Failed": failed, "Ending": r.Ending, "M": m, "HasSamples": len(r.Samples) > 0,
	})
	return m, err
}

// clock is a time of day as the report shows times: UTC, so that the same
// run gives the same page wherever it is rendered.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000 UTC") }

// runSpan is the time the report covers: the run's start to its last
// step's end (or its last update, or now for a run still going).
func runSpan(r *journal.Run, now time.Time) (time.Time, time.Time) {
	start, end := r.StartedAt, r.UpdatedAt
	for _, s := range r.Steps {
		if !s.StartedAt.IsZero() && (start.IsZero() || s.StartedAt.Before(start)) {
			start = s.StartedAt
		}
		if s.EndedAt.After(end) {
			end = s.EndedAt
		}
		if s.Status == journal.Running && now.After(end) {
			end = now
		}
	}
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	return start, end
}

type stepRow struct {
	name  string
	steps []*journal.Step
	first time.Time // when its last step started: the row's place
}

// runRows puts the cluster-wide steps and gates on the first row, then
// one row per node (instance key) in the order the nodes were upgraded.
func runRows(r *journal.Run) []stepRow {
	byKey := map[string]*stepRow{}
	var order []string
	for _, s := range sortedSteps(r) {
		key := keyOf(strings.TrimSuffix(s.Address, ".undo"))
		if key == "" || isGate(s) {
			key = "cluster"
		}
		row := byKey[key]
		if row == nil {
			row = &stepRow{name: key}
			byKey[key] = row
			order = append(order, key)
		}
		row.steps = append(row.steps, s)
		// A row is placed by its last step's start: every node's
		// cluster-wide steps (read_only, backup_data) start together, its
		// rollout item's steps in the order the rollout takes the nodes.
		if !s.StartedAt.IsZero() && s.StartedAt.After(row.first) {
			row.first = s.StartedAt
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := byKey[order[i]], byKey[order[j]]
		if (a.name == "cluster") != (b.name == "cluster") {
			return a.name == "cluster"
		}
		if a.first.IsZero() != b.first.IsZero() {
			return !a.first.IsZero()
		}
		if !a.first.Equal(b.first) {
			return a.first.Before(b.first)
		}
		return naturalLess(a.name, b.name)
	})
	// Items of one batch start within moments of each other, in no
	// meaningful order: within such a group, names go in natural order
	// (node-2 before node-10).
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && !byKey[order[i]].first.IsZero() && byKey[order[j]].first.Sub(byKey[order[i]].first) < 250*time.Millisecond {
			j++
		}
		if byKey[order[i]].name != "cluster" {
			group := order[i:j]
			sort.SliceStable(group, func(a, b int) bool { return naturalLess(group[a], group[b]) })
		}
		i = j
	}
	out := make([]stepRow, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out
}

// naturalLess orders names with their numbers by value: node-2 < node-10.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// sortedSteps lists the run's steps by start, then address: the journal
// keeps them in a map.
func sortedSteps(r *journal.Run) []*journal.Step {
	out := make([]*journal.Step, 0, len(r.Steps))
	for _, s := range r.Steps {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.StartedAt.Equal(b.StartedAt) {
			if a.StartedAt.IsZero() || b.StartedAt.IsZero() {
				return !a.StartedAt.IsZero()
			}
			return a.StartedAt.Before(b.StartedAt)
		}
		return a.Address < b.Address
	})
	return out
}

// keyOf is the instance key of an address: node-1 in step.drain["node-1"].
func keyOf(addr string) string {
	i := strings.IndexByte(addr, '[')
	if i < 0 || !strings.HasSuffix(addr, "]") {
		return ""
	}
	k := addr[i+1 : len(addr)-1]
	if uq, err := unquote(k); err == nil {
		return uq
	}
	return k
}

func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", fmt.Errorf("not quoted")
	}
	return strings.ReplaceAll(s[1:len(s)-1], `\"`, `"`), nil
}

// stepName is the step's name: drain in step.drain["node-1"].
func stepName(addr string) string {
	undo := strings.HasSuffix(addr, ".undo")
	n := strings.TrimPrefix(strings.TrimSuffix(addr, ".undo"), "step.")
	if i := strings.IndexByte(n, '['); i > 0 {
		n = n[:i]
	}
	if undo {
		return "undo " + n
	}
	return n
}

// isGate: a rollout's gate is journaled as a step record at its address,
// gate.ROLLOUT["NAME"] (runner.GateAddr).
func isGate(s *journal.Step) bool {
	return strings.HasPrefix(s.Address, "gate.")
}

// isWait: the standard actions that wait on something outside upshift.
func isWait(action string) bool {
	i := strings.LastIndexByte(action, '.')
	switch action[i+1:] {
	case "drain", "enable", "wait_healthy", "sleep":
		return true
	}
	return false
}

// overlapping reports whether any two of the [from, to] spans overlap.
func overlapping(spans [][2]float64) bool {
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	for i := 1; i < len(spans); i++ {
		if spans[i][0] < spans[i-1][1] {
			return true
		}
	}
	return false
}

// clipName shortens a node name to the gutter.
func clipName(s string, width, font float64) string {
	maxChars := int(width / (font * charW))
	if len(s) <= maxChars {
		return s
	}
	return s[:maxChars-1] + "…"
}

// timeTicks are round times along the axis, at most about 10.
func timeTicks(span float64, x func(time.Time) float64, start time.Time) []axisTick {
	step := 1.0
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600} {
		step = s
		if span/s <= 10 {
			break
		}
	}
	var out []axisTick
	for t := 0.0; t <= span+1e-9; t += step {
		out = append(out, axisTick{X: x(start.Add(time.Duration(t * float64(time.Second)))), Label: tickLabel(int(t))})
	}
	return out
}

// tickLabel writes whole seconds as 45s, 1m, 1m30s, 1h5m.
func tickLabel(sec int) string {
	switch {
	case sec < 60:
		return fmt.Sprintf("%ds", sec)
	case sec < 3600 && sec%60 == 0:
		return fmt.Sprintf("%dm", sec/60)
	case sec < 3600:
		return fmt.Sprintf("%dm%ds", sec/60, sec%60)
	}
	return strings.TrimSuffix(strings.TrimSuffix((time.Duration(sec)*time.Second).String(), "0s"), "m0")
}

type trafficSecond struct{ i, ok, ro, fail int }

func trafficSeconds(samples []traffic.Sample, start, end time.Time) ([]trafficSecond, int) {
	by := map[int]*trafficSecond{}
	maxN := 1
	for _, s := range samples {
		if s.At.Before(start) || s.At.After(end) {
			continue
		}
		i := int(s.At.Sub(start).Seconds())
		b := by[i]
		if b == nil {
			b = &trafficSecond{i: i}
			by[i] = b
		}
		switch {
		case s.OK():
			b.ok++
		case s.ReadOnly:
			b.ro++
		default:
			b.fail++
		}
		maxN = max(maxN, b.ok+b.ro+b.fail)
	}
	out := make([]trafficSecond, 0, len(by))
	for _, b := range by {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].i < out[j].i })
	return out, maxN
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Millisecond).String()
}

func shortDigest(s string) string {
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[i+1:] // "hmac:...": the journal keeps the digest keyed
	}
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

var runPage = template.Must(template.New("run").Funcs(template.FuncMap{
	"add":  func(a, b float64) float64 { return round(a + b) },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="upshift-report" content="rows={{.M.Rows}} row_height={{.M.RowHeight}} min_font_px={{.M.MinFontPx}} labels={{.M.Labels}} labels_overlap={{.M.LabelsOverlap}}">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;font-size:14px}
h1{font-size:1.35em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:.15em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.pass{color:#2e7d32}.bad{color:#c0392b;font-weight:bold}
svg{font-family:system-ui,sans-serif}
svg .name{font-size:{{printf "%.0f" 12.0}}px;fill:#222}
svg .lbl{font-size:11px;fill:#fff;pointer-events:none}
svg .axis{font-size:11px;fill:#555}
svg .rowlbl{font-size:11px;fill:#333}
svg .grid{stroke:#e4e4e4}
.done,.running{stroke:none}.wait{fill-opacity:.75}
.running{fill-opacity:.5}
.failed{fill:#c0392b}.rolled_back{fill:#e67e22}.skipped{fill:#bbb}.pending{fill:none}
.gate{fill:#6a3d9a}.req{fill:#7aa6d6}.err{fill:#c0392b}.ro{fill:#e6a817}
.outage{fill:#f6c343;fill-opacity:.18;stroke:#e6a817;stroke-dasharray:4 3}
.outlbl{font-size:11px;fill:#8a6d00}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .9em;vertical-align:middle}
</style></head><body>
<h1>{{.Title}}</h1>
<table>
<tr><th>Run</th><td>{{.R.ID}}: <strong class="{{if eq (print .R.Status) "done"}}pass{{else}}bad{{end}}">{{.R.Status}}</strong>, began {{time .Start}}, {{.Took}}</td></tr>
<tr><th>Playbook</th><td>{{.R.Playbook}}{{if .Digest}} (digest {{.Digest}}){{end}}</td></tr>
{{if .R.Cluster}}<tr><th>Cluster</th><td>{{.R.Cluster}}</td></tr>{{end}}
{{with .OutageLine}}<tr><th>Write outage</th><td>{{.}}</td></tr>{{end}}
{{with .Audit}}<tr><th>Who</th><td>{{if .User}}{{.User}}{{else}}unknown{{end}} on {{if .Host}}{{.Host}}{{else}}an unknown host{{end}}, upshift {{if .Version}}{{.Version}}{{else}}(version not recorded){{end}}</td></tr>
{{if .Command}}<tr><th>Command</th><td><code>{{.Command}}</code></td></tr>{{end}}{{else}}<tr><th>Who</th><td>not recorded (a journal of an older upshift)</td></tr>{{end}}
</table>
{{with .Ending}}<p class="bad">{{if .Returned}}Ended before its point of no return: {{.Returned}}.{{else if .Standing}}Past its point of no return ({{.PointOfNoReturn}}); where each item stands: {{range .Standing}}<br>{{.}}{{end}}{{end}}</p>{{end}}
<h2>Steps per node</h2>
<p class="legend">{{range .Legend}}<span style="background:{{.Color}}"></span>{{.Name}}{{end}}<span style="background:#6a3d9a"></span>gate<span style="background:#c0392b"></span>failed<span style="background:#e67e22"></span>rolled back<span style="background:#bbb"></span>skipped<span style="background:#f6c343;opacity:.5"></span>writes refused; lighter bars are waits (drain, enable, wait_healthy). Hover a bar for its duration and outcome.</p>
<svg width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="timeline of the run's steps per node">
{{range .Ticks}}<line class="grid" x1="{{.X}}" x2="{{.X}}" y1="{{$.Top}}" y2="{{$.PlotH}}"></line>
{{end}}{{with .Outage}}<g><title>{{.Title}}</title><rect class="outage" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect><text class="outlbl" x="{{.X}}" y="{{add .Y -6}}">{{.Label}}</text></g>
{{end}}{{range .Rows}}<text class="name" x="4" y="{{.Y}}"><title>{{.Title}}</title>{{.Name}}</text>
{{end}}{{range .Bars}}<g><title>{{.Title}}</title><rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"{{if .Color}} fill="{{.Color}}"{{end}}></rect>{{if .Label}}<text class="lbl" x="{{add .X 3}}" y="{{add .Y (add .H -5)}}">{{.Label}}</text>{{end}}</g>
{{end}}{{range .RowLabels}}<text class="rowlbl" x="{{.X}}" y="{{.Y}}" text-anchor="{{.Class}}">{{.Label}}</text>
{{end}}{{range .Ticks}}<text class="axis" x="{{.X}}" y="{{add $.PlotH 14}}">{{.Label}}</text>
{{end}}{{if .LBBars}}<text class="axis" x="4" y="{{add $.LBTop 12}}">load balancer</text><text class="axis" x="4" y="{{add $.LBTop 26}}">requests/s (max {{.MaxRate}})</text>
{{range .LBBars}}<g><title>{{.Title}}</title><rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect></g>
{{end}}{{range .Ticks}}<line class="grid" x1="{{.X}}" x2="{{.X}}" y1="{{$.LBTop}}" y2="{{add $.LBTop $.ChartH}}"></line>
{{end}}{{end}}{{if .LabBars}}<text class="axis" x="4" y="{{add $.LabTop 12}}">lab traffic</text><text class="axis" x="4" y="{{add $.LabTop 26}}">requests/s (max {{.LabMax}}){{if .LabFailed}}, {{.LabFailed}} failed{{end}}</text>
{{range .LabBars}}<g><title>{{.Title}}</title><rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect></g>
{{end}}{{range .Ticks}}<text class="axis" x="{{.X}}" y="{{add $.LabTop (add $.ChartH 14)}}">{{.Label}}</text>
{{end}}{{end}}</svg>
{{if not .HasSamples}}<p>No traffic guard sampled the load balancer in this run{{if not .LabBars}}, and no lab traffic was found{{end}}.</p>{{end}}
{{with .Gates}}<h2>Gates</h2><table><tr><th>Gate</th><th>Status</th><th>From</th><th>To</th><th>Note</th></tr>
{{range .}}<tr><td>{{.Address}}</td><td>{{.Status}}</td><td>{{if not .StartedAt.IsZero}}{{time .StartedAt}}{{end}}</td><td>{{if not .EndedAt.IsZero}}{{time .EndedAt}}{{end}}</td><td>{{.Note}}</td></tr>
{{end}}</table>{{end}}
{{with .Failed}}<h2>Failed steps</h2><table>{{range .}}<tr><td>{{.Address}}</td><td><pre style="margin:0;white-space:pre-wrap">{{.Error}}</pre></td></tr>{{end}}</table>{{end}}
<h2>Nodes</h2>
<table><tr><th>Node</th><th>Steps done</th><th>Outcome</th><th>Time</th><th>Slowest step</th></tr>
{{range .Nodes}}<tr><td>{{.Name}}</td><td>{{.Steps}}</td><td class="{{.Class}}">{{.Outcome}}</td><td>{{.Took}}</td><td>{{.Slowest}}</td></tr>
{{end}}</table>
</body></html>
`))
