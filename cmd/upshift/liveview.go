package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

// The live view: what ConsoleSink keeps of a run to draw its footer (one
// line for the run, one per node) and the summary table at the end. The
// footer is drawn by mpb (github.com/vbauerster/mpb/v8): it redraws on its
// own timer, so elapsed times move while no event comes, lines printed
// through it appear above the footer, and it measures widths without
// escapes. mpb rather than bubbletea: the view is a log with a footer,
// which must stay readable when scrolled back or piped, not a full-screen
// program that owns the terminal and its input (Ctrl-C stays the
// stopper's).

const (
	// refreshEvery is how often the footer redraws with no event.
	refreshEvery = 250 * time.Millisecond
	// heartbeatEvery: a step that has printed nothing for this long gets a
	// "still ..." line, so a log shows that a long wait is alive.
	heartbeatEvery = 10 * time.Second
	// changeEvery is the least time between two progress lines of one
	// step: a wait whose message changes every poll (200 ms) prints its
	// latest message at most this often.
	changeEvery = time.Second
	// footerNodes caps the node lines of the footer; the rest is summed up
	// in one line.
	footerNodes = 14
)

// runLayout is what the plan says of the run's shape: the nodes (rollout
// items and keyed steps) in the order they will run, each node's steps, and
// the rollouts' batches.
type runLayout struct {
	nodes     []string          // in run order: rollout batch and item, then first appearance
	steps     map[string]int    // steps per node
	total     int               // instances in the run
	rollout   map[string]string // address -> rollout name
	batch     map[string]int    // address -> batch (1-based); 0 outside rollouts
	batches   map[string]int    // rollout -> number of batches
	rollouts  []string          // in source order
	stepNames map[string]string
}

// layoutOf reads the layout of g; nil g gives an empty layout (nodes then
// appear as their events come).
func layoutOf(g *runner.Graph) *runLayout {
	l := &runLayout{steps: map[string]int{}, rollout: map[string]string{}, batch: map[string]int{}, batches: map[string]int{}, stepNames: map[string]string{}}
	if g == nil {
		return l
	}
	l.total = len(g.Instances)
	insts := append([]*runner.StepInstance(nil), g.Instances...)
	sort.SliceStable(insts, func(i, j int) bool {
		a, b := insts[i], insts[j]
		if (a.Batch > 0) != (b.Batch > 0) {
			return a.Batch > 0 // rollout items first: they are what the operator watches
		}
		if a.Batch != b.Batch {
			return a.Batch < b.Batch
		}
		if a.Item != b.Item {
			return a.Item < b.Item
		}
		return a.Seq < b.Seq
	})
	seen := map[string]bool{}
	for _, inst := range insts {
		l.stepNames[inst.Addr] = inst.Step.Name
		if r := rolloutOf(inst.Step); r != "" {
			l.rollout[inst.Addr], l.batch[inst.Addr] = r, inst.Batch
			if _, ok := l.batches[r]; !ok {
				l.rollouts = append(l.rollouts, r)
			}
			l.batches[r] = len(g.Items[r])
		}
		key := inst.Key
		if !inst.Keyed {
			key = clusterRow
		}
		l.steps[key]++
		if !seen[key] {
			seen[key] = true
			l.nodes = append(l.nodes, key)
		}
	}
	if seen[clusterRow] {
		// The cluster-wide steps (backup, copy) first, as they run first.
		out := []string{clusterRow}
		for _, n := range l.nodes {
			if n != clusterRow {
				out = append(out, n)
			}
		}
		l.nodes = out
	}
	return l
}

// clusterRow is the footer's line for the steps that are not a node's (a
// backup, a copy): a long copy must not look like a frozen view.
const clusterRow = "cluster"

func rolloutOf(s *playbooks.Step) string {
	if s == nil || s.Rollout == nil {
		return ""
	}
	return s.Rollout.Name
}

// nodeState is one node's line.
type nodeState struct {
	name     string
	step     string // the step running, or the last one
	state    string // queued, running, done, failed, skipped
	since    time.Time
	first    time.Time // first step started
	last     time.Time // last step ended
	done     int
	wait     string // what the running step waits for
	slowest  string
	slowestD time.Duration
	failed   string
}

// liveState is the run as the footer shows it.
type liveState struct {
	layout    *runLayout
	nodes     map[string]*nodeState
	order     []string
	start     time.Time
	finished  int // steps that ended in this run (for the estimate)
	settled   int // steps done, skipped or restored
	failed    int
	batchNow  map[string]int // rollout -> highest batch started
	gate      string         // the gate holding the run, "" when none
	gateSince time.Time
	rollout   string // the rollout last active
	ended     bool
}

func newLiveState(l *runLayout) *liveState {
	s := &liveState{layout: l, nodes: map[string]*nodeState{}, batchNow: map[string]int{}}
	for _, n := range l.nodes {
		s.node(n)
	}
	return s
}

func (s *liveState) node(key string) *nodeState {
	n, ok := s.nodes[key]
	if !ok {
		n = &nodeState{name: key, state: "queued"}
		s.nodes[key] = n
		s.order = append(s.order, key)
	}
	return n
}

func (s *liveState) stepName(addr string) string {
	if n, ok := s.layout.stepNames[addr]; ok {
		return n
	}
	step := strings.TrimPrefix(addr, "step.")
	if i := strings.IndexByte(step, '['); i > 0 {
		step = step[:i]
	}
	return step
}

// track updates the state with e (already escaped for the terminal).
func (s *liveState) track(e runner.Event) {
	if s.start.IsZero() && e.Type == runner.RunStarted {
		s.start = e.Time
	}
	if strings.HasPrefix(e.Address, "gate.") {
		// A rollout's gate: an approval or a bake between batches, shown
		// on the run's line while it holds the rollout.
		switch e.Type {
		case runner.StepStarted:
			s.gate, s.gateSince = e.Message, e.Time
		case runner.StepFinished, runner.StepRestored, runner.StepFailed:
			s.gate = ""
		}
		return
	}
	if _, known := s.layout.stepNames[e.Address]; e.Address != "" && !known && s.layout.total > 0 {
		return // a preflight check, or a rollout's own line: not a step of the plan
	}
	if r := s.layout.rollout[e.Address]; r != "" && e.Type == runner.StepStarted {
		s.rollout = r
		s.batchNow[r] = max(s.batchNow[r], s.layout.batch[e.Address])
	}
	switch e.Type {
	case runner.StepFinished, runner.StepSkipped, runner.StepRestored:
		s.settled++
		if e.Type != runner.StepRestored {
			s.finished++
		}
	case runner.StepFailed:
		s.failed++
		s.finished++
	case runner.RunFinished:
		s.ended = true
	}
	key := e.Key
	if key == "" {
		if e.Address == "" {
			return
		}
		key = clusterRow
	}
	n := s.node(key)
	step := s.stepName(e.Address)
	switch e.Type {
	case runner.StepStarted:
		n.step, n.state, n.since, n.wait = step, "running", e.Time, ""
		if n.first.IsZero() {
			n.first = e.Time
		}
	case runner.StepProgress:
		n.wait = waitText(e)
	case runner.StepFinished, runner.StepRestored, runner.StepSkipped:
		n.done++
		n.step, n.wait, n.last = step, "", e.Time
		if e.Duration > n.slowestD {
			n.slowest, n.slowestD = step, e.Duration
		}
		if n.state != "failed" {
			n.state = "done"
			if e.Type == runner.StepSkipped {
				n.state = "skipped"
			}
			if t := s.layout.steps[n.name]; t > 0 && n.done < t {
				// Its cluster-wide steps done, it waits for its turn
				// in the rollout.
				n.state = "queued"
			}
		}
	case runner.StepFailed:
		n.step, n.state, n.wait, n.last, n.failed = step, "failed", "", e.Time, step
	}
}

// waitText says what a step waits for, from its progress fields when the
// line has them.
func waitText(e runner.Event) string {
	p := e.Progress
	if p == nil {
		p = runner.ParseProgress(e.Message)
	}
	switch {
	case p == nil:
		return e.Message
	case p.Sessions != nil:
		if p.Detail != "" {
			return fmt.Sprintf("%d session(s) left, %s", *p.Sessions, p.Detail)
		}
		return fmt.Sprintf("%d session(s) left", *p.Sessions)
	case p.Workers != nil:
		return fmt.Sprintf("%d old nginx worker(s) finishing", *p.Workers)
	case p.HealthyChecks != nil:
		return fmt.Sprintf("health checks %d/%d passed", *p.HealthyChecks, *p.HealthyNeeded)
	case p.Healthy != nil && !*p.Healthy:
		return "not healthy yet: " + p.Detail
	case p.Percent != nil && p.Left > 0:
		return fmt.Sprintf("%s %d%%, about %s left", p.Phase, *p.Percent, p.Left)
	case p.Percent != nil:
		return fmt.Sprintf("%s %d%%", p.Phase, *p.Percent)
	}
	return e.Message
}

// footer renders the footer's lines at now: the run's line, then up to max
// node lines in run order (running and failed nodes first when they do
// not all fit), then one line summing up those left out.
func (s *liveState) footer(now time.Time, maxNodes int, c palette) []string {
	out := []string{s.headline(now)}
	shown := s.order
	if len(shown) > maxNodes {
		var busy, rest []string
		for _, k := range s.order {
			if st := s.nodes[k].state; st == "running" || st == "failed" {
				busy = append(busy, k)
			} else if st == "queued" {
				rest = append(rest, k)
			}
		}
		shown = append(busy, rest...)
		if len(shown) > maxNodes {
			shown = shown[:maxNodes]
		}
		// Keep the run order among those shown.
		pos := map[string]int{}
		for i, k := range s.order {
			pos[k] = i
		}
		sort.SliceStable(shown, func(i, j int) bool { return pos[shown[i]] < pos[shown[j]] })
	}
	width := 4
	for _, k := range shown {
		width = max(width, len(k))
	}
	for _, k := range shown {
		out = append(out, s.nodeLine(s.nodes[k], width, now, c))
	}
	if left := len(s.order) - len(shown); left > 0 {
		count := map[string]int{}
		for _, k := range s.order {
			count[s.nodes[k].state]++
		}
		for _, k := range shown {
			count[s.nodes[k].state]--
		}
		var parts []string
		for _, st := range []string{"running", "failed", "queued", "done", "skipped"} {
			if count[st] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
			}
		}
		out = append(out, fmt.Sprintf("  ... %d more: %s", left, strings.Join(parts, ", ")))
	}
	return out
}

func (s *liveState) headline(now time.Time) string {
	var parts []string
	if r := s.rollout; r != "" && s.layout.batches[r] > 0 {
		parts = append(parts, fmt.Sprintf("batch %d/%d", max(1, s.batchNow[r]), s.layout.batches[r]))
	}
	total := s.layout.total
	if total > 0 {
		parts = append(parts, fmt.Sprintf("step %d/%d", s.settled+s.failed, total))
	}
	if !s.start.IsZero() {
		parts = append(parts, shortDur(now.Sub(s.start))+" elapsed")
		if left := total - s.settled - s.failed; s.finished > 0 && left > 0 && !s.ended {
			per := now.Sub(s.start) / time.Duration(s.finished)
			parts = append(parts, "about "+shortDur(per*time.Duration(left))+" left")
		}
	}
	if s.failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", s.failed))
	}
	if s.gate != "" {
		parts = append(parts, fmt.Sprintf("gate: %s, %s", s.gate, shortDur(now.Sub(s.gateSince))))
	}
	return "  " + strings.Join(parts, " | ")
}

func (s *liveState) nodeLine(n *nodeState, width int, now time.Time, c palette) string {
	steps := ""
	if t := s.layout.steps[n.name]; t > 0 {
		steps = fmt.Sprintf("%d/%d", n.done, t)
	}
	line := fmt.Sprintf("  %-*s  %-6s", width, n.name, steps)
	switch n.state {
	case "queued":
		return line + "  " + c.dim("queued")
	case "running":
		line += fmt.Sprintf("  %s %s", c.run(n.step), shortDur(now.Sub(n.since)))
		if n.wait != "" {
			line += "  " + n.wait
		}
		return line
	case "failed":
		return line + "  " + c.bad("FAILED at "+n.failed)
	}
	return line + "  " + c.good(n.state) + " " + c.dim(shortDur(n.last.Sub(n.first)))
}

// summary writes the table printed when the run ends: one row per node.
func (s *liveState) summary(w io.Writer) {
	if len(s.order) == 0 {
		return
	}
	fmt.Fprintln(w, "\nNodes:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  node\tsteps\toutcome\ttime\tslowest step")
	for _, k := range s.order {
		n := s.nodes[k]
		steps := fmt.Sprint(n.done)
		if t := s.layout.steps[k]; t > 0 {
			steps = fmt.Sprintf("%d/%d", n.done, t)
		}
		outcome := n.state
		if n.state == "failed" {
			outcome = "FAILED at " + n.failed
		} else if n.state == "running" {
			outcome = "stopped in " + n.step
		}
		took, slow := "-", "-"
		if !n.first.IsZero() && !n.last.IsZero() {
			took = shortDur(n.last.Sub(n.first))
		}
		if n.slowest != "" {
			slow = fmt.Sprintf("%s %s", n.slowest, shortDur(n.slowestD))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", k, steps, outcome, took, slow)
	}
	_ = tw.Flush()
}

// shortDur rounds d for a glance: tenths of a second below a minute.
func shortDur(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// palette colours the footer's state words; the zero palette does not
// (NO_COLOR, or not a terminal).
type palette struct{ on bool }

func (p palette) wrap(code, s string) string {
	if !p.on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
func (p palette) good(s string) string { return p.wrap("32", s) }
func (p palette) bad(s string) string  { return p.wrap("31", s) }
func (p palette) run(s string) string  { return p.wrap("1", s) }
func (p palette) dim(s string) string  { return p.wrap("2", s) }

// liveTerminal reports whether w can keep a footer: a terminal that moves
// its cursor (not TERM=dumb). NO_COLOR has no say here (colorWanted).
func liveTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd()) && os.Getenv("TERM") != "dumb"
}

// colorWanted follows https://no-color.org: NO_COLOR set and not empty
// turns colour off (the footer stays).
func colorWanted() bool { return os.Getenv("NO_COLOR") == "" }

// waitLines decides which progress lines of one step are printed: a line
// whose message changed (numbers of a duration aside), at most one per
// changeEvery, and otherwise a heartbeat after heartbeatEvery of silence.
type waitLines struct {
	lastText    string    // normalised text of the last progress line printed
	changeAt    time.Time // when the last progress line was printed
	quietSince  time.Time // when any line of the step was last printed
	pending     *runner.Event
	pendingNorm string
}

var durationRE = regexp.MustCompile(`\d+(\.\d+)?(ns|µs|us|ms|s|m|h)(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))*`)

var numberRE = regexp.MustCompile(`\d+(\.\d+)?`)

// normWait drops what changes with every poll of an unchanged wait: its
// durations ("(1.2s of 1m0s)").
func normWait(s string) string { return durationRE.ReplaceAllString(s, "#") }

// admit reports whether e is printed now; a changed line that comes too
// soon after the last is kept and flushed by due.
func (w *waitLines) admit(e runner.Event) bool {
	norm := normWait(e.Message)
	if e.Progress != nil && e.Progress.Percent != nil {
		// A meter (a copy's bytes) moves at every line: its heartbeat
		// is enough, the footer has the latest figures.
		norm = numberRE.ReplaceAllString(e.Message, "#")
	}
	if norm == w.lastText {
		w.pending = nil
		return false
	}
	if !w.changeAt.IsZero() && e.Time.Sub(w.changeAt) < changeEvery {
		ec := e
		w.pending, w.pendingNorm = &ec, norm
		return false
	}
	w.lastText, w.changeAt, w.quietSince, w.pending = norm, e.Time, e.Time, nil
	return true
}

// due returns the line to print at now, if any: a held change whose time
// has come, or a heartbeat. heartbeat is true for the latter.
func (w *waitLines) due(now time.Time) (e *runner.Event, heartbeat bool) {
	if w.pending != nil && now.Sub(w.changeAt) >= changeEvery {
		p := w.pending
		w.lastText, w.changeAt, w.quietSince, w.pending = w.pendingNorm, now, now, nil
		return p, false
	}
	if now.Sub(w.quietSince) >= heartbeatEvery {
		w.quietSince = now
		return nil, true
	}
	return nil, false
}

// footerBars draws the footer with mpb: one bar with no fill per line,
// whose only decorator asks the state for its line at each redraw.
type footerBars struct {
	p    *mpb.Progress
	bars []*mpb.Bar
}

func newFooter(out io.Writer, lines int, force bool, line func(i int, width int) string) *footerBars {
	opts := []mpb.ContainerOption{mpb.WithOutput(out), mpb.WithRefreshRate(refreshEvery)}
	if force {
		opts = append(opts, mpb.WithAutoRefresh())
	}
	f := &footerBars{p: mpb.New(opts...)}
	for i := 0; i < lines; i++ {
		i := i
		f.bars = append(f.bars, f.p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(st decor.Statistics) string {
			return clip(line(i, st.AvailableWidth), st.AvailableWidth)
		}))))
	}
	return f
}

// stop removes the footer from the screen and ends mpb.
func (f *footerBars) stop() {
	for _, b := range f.bars {
		b.Abort(true)
	}
	f.p.Wait()
}

// clip cuts s to width-1 columns, so that the terminal never wraps a
// footer line; escapes (only the palette's) take no column.
func clip(s string, width int) string {
	if width <= 1 {
		return s
	}
	var b strings.Builder
	cols, inEsc := 0, false
	for _, r := range s {
		switch {
		case r == '\x1b':
			inEsc = true
		case inEsc:
			inEsc = r != 'm'
		case cols >= width-1:
			if strings.Contains(s, "\x1b[") {
				b.WriteString("\x1b[0m")
			}
			return b.String()
		default:
			cols++
		}
		b.WriteRune(r)
	}
	return b.String()
}

// escaped is e with what comes from elsewhere escaped for the terminal.
func escaped(e runner.Event) runner.Event {
	e = safe(e)
	if e.Progress != nil {
		p := *e.Progress
		p.Detail, p.Server = termtext.Line(p.Detail), termtext.Line(p.Server)
		e.Progress = &p
	}
	return e
}

// started reports whether any node's step began: a run that stopped in
// preflight has no table to show.
func (s *liveState) started() bool {
	for _, n := range s.nodes {
		if !n.first.IsZero() {
			return true
		}
	}
	return false
}

// runSink is where `upshift run` sends its events: the console, or JSON
// lines with --json; either way every event carries the run id and its
// progress fields (runner.StampRunID).
type runSink struct {
	runner.Sink
	console *ConsoleSink
}

func newRunSink(out io.Writer, asJSON bool, g *runner.Graph, runID func() string) *runSink {
	if asJSON {
		return &runSink{Sink: runner.StampRunID(runner.NewJSONSink(out), runID)}
	}
	c := newRunConsole(out, g)
	return &runSink{Sink: runner.StampRunID(c, runID), console: c}
}

// Close ends the live view (before anything else is printed after the
// run) and prints the nodes' table.
func (r *runSink) Close() {
	if r.console != nil {
		r.console.Close()
	}
}

// runIDOf tells the run's id once known: a resumed run's from the journal,
// a new run's once the runner has made it (run.id).
func runIDOf(pb *playbooks.Playbook, prev *journal.Run) func() string {
	return func() string {
		if id := pb.RunID(); id != "" {
			return id
		}
		if prev != nil && prev.Resumable() {
			return prev.ID
		}
		return ""
	}
}
