// The traffic guard: a rollout's `guard` block samples its load balancer's
// metrics action from the rollout's first instance start until its last
// instance ends, keeps the samples (and journals them), and when the
// errors counted over the window break a budget it applies the rollout's
// on_failure at once: no further instance of the rollout starts (each fails
// with the guard's message), and with on_failure = "rollback" the item it
// blames is rolled back after the walk, even if all its steps finished.
// A guard's probes (guard_probe.go) run alongside the sampler: their
// failed requests count as errors, their requests as requests.

package runner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
)

// guard is one rollout's traffic guard during a run.
type guard struct {
	x        *execution
	rollout  *playbooks.Rollout
	cfg      *playbooks.Guard
	provider plugins.Provider

	mu sync.Mutex
	// pending are the rollout's instances not yet settled (run, restored,
	// or to be skipped after a failure): the rollout has ended when none
	// is left.
	pending map[string]bool
	started bool
	ended   bool
	cancel  context.CancelFunc
	done    chan struct{}
	// began holds the items that had an instance start in this run.
	began map[string]bool
	// refused holds the items the guard refused an instance of.
	refused map[string]bool
	// server -> item, from the results of the rollout's steps on the
	// guarded load balancer; enabled lists the items whose enable ran, in
	// order.
	servers map[string]string
	enabled []string
	// enabledAt holds when the enable of each server the rollout put back
	// in rotation began: max_server_errors counts a server from then on.
	enabledAt map[string]time.Time
	// window holds the successful samples of the last window.
	window []reading
	// last holds each server's errors in the previous successful sample,
	// so the journal keeps only the servers whose errors grew.
	last           map[string]int64
	total, failed  int
	trip           *GuardTrip
	undone         []string // instances the guard undid at once (drainBlamed)
	sampleTimeout  time.Duration
	lastSampleFail string
	// probes are the guard's probes' states, one per probe block.
	probes []*probeState
}

// reading is one successful sample, as the guard computes with it.
type reading struct {
	at      time.Time
	backend journal.Counters
	servers map[string]journal.Counters
}

// GuardTrip says why a rollout's guard halted it.
type GuardTrip struct {
	Rollout string
	// Counter is "errors" (http_5xx + connection_errors + response_errors)
	// or "error rate"; Server is set when a server's budget broke.
	Counter string
	Server  string
	Value   int64
	// Requests is the backend's requests over the window.
	Requests int64
	Budget   string
	Window   time.Duration
	// Breakdown gives the error counters that make up Value.
	Breakdown     journal.Counters
	Samples       int
	FailedSamples int
	// Probes are the guard's probes' requests over the window (their
	// failures are in Value, their requests in Requests); ProbesOnly is
	// set when the guard has no metrics source.
	Probes     []ProbeWindow
	ProbesOnly bool
	At         time.Time
	// Blamed is the rollout item the guard blames: the server's item, or
	// the item most recently enabled; "" when none.
	Blamed string
}

func (t *GuardTrip) Error() string {
	who := "the backend"
	if t.Server != "" {
		who = "server " + t.Server
	} else if t.ProbesOnly {
		who = "the probes"
	}
	var parts string
	if !t.ProbesOnly {
		parts = fmt.Sprintf("http_5xx %d, connection_errors %d, response_errors %d", t.Breakdown.HTTP5xx, t.Breakdown.ConnectionErrors, t.Breakdown.ResponseErrors)
	}
	if t.Server == "" && len(t.Probes) > 0 {
		if parts != "" {
			parts += "; "
		}
		parts += probesText(t.Probes, t.Window)
	}
	var what string
	if t.Counter == "error rate" {
		what = fmt.Sprintf("errors on %s were %s%% of its %d requests over the last %s (%d errors: %s), over its budget of %s",
			who, strconv.FormatFloat(100*float64(t.Value)/float64(t.Requests), 'f', 1, 64), t.Requests, t.Window, t.Value, parts, t.Budget)
	} else {
		what = fmt.Sprintf("%s counted %d errors (%s) over the last %s, over its budget of %s", who, t.Value, parts, t.Window, t.Budget)
	}
	blame := "no item to blame"
	if t.Blamed != "" {
		blame = fmt.Sprintf("item %q blamed", t.Blamed)
	}
	return fmt.Sprintf("the traffic guard of rollout %q halted it: %s; %s; %d of %d samples failed", t.Rollout, what, blame, t.FailedSamples, t.Samples)
}

// newGuards makes a guard for each rollout that has one.
func (x *execution) newGuards() {
	for _, r := range x.g.Playbook.Rollouts {
		if r.Guard == nil || (r.Guard.Metrics == nil && len(r.Guard.Probes) == 0) {
			continue
		}
		g := &guard{x: x, rollout: r, cfg: r.Guard,
			pending: map[string]bool{}, began: map[string]bool{}, enabledAt: map[string]time.Time{}, refused: map[string]bool{}, servers: map[string]string{},
			last: map[string]int64{}, done: make(chan struct{}), sampleTimeout: max(r.Guard.Interval, 2*time.Second)}
		if r.Guard.Metrics != nil {
			g.provider = x.opts.Providers[r.Guard.Metrics.Address()]
		}
		for _, p := range r.Guard.Probes {
			g.probes = append(g.probes, newProbeState(p))
		}
		for _, s := range r.Steps {
			for _, inst := range x.g.ByStep[s.Name] {
				g.pending[inst.Addr] = true
			}
		}
		if x.guards == nil {
			x.guards = map[string]*guard{}
		}
		x.guards[r.Name] = g
	}
}

func (x *execution) guardOf(inst *StepInstance) *guard {
	if inst.Step.Rollout == nil {
		return nil
	}
	return x.guards[inst.Step.Rollout.Name]
}

// guardedVertex runs an instance of a guarded rollout: refused once the
// guard has tripped, else run; either way settled.
func (x *execution) guardedVertex(ctx context.Context, g *guard, inst *StepInstance) error {
	if trip := g.admit(ctx, inst); trip != nil {
		err := fmt.Errorf("not started: %w", trip)
		started := time.Now()
		if jerr := x.record(inst, journal.Step{Status: journal.Failed, Error: err.Error(), StartedAt: started, EndedAt: started}); jerr != nil {
			err = fmt.Errorf("%w (and recording the failure failed: %v)", err, jerr)
		}
		x.emit(Event{Type: StepFailed, Address: inst.Addr, Action: inst.Step.Run.String(), Key: inst.Key, Error: err.Error(), Time: started})
		x.settled(inst, err)
		return err
	}
	started := time.Now()
	g.enabling(inst, started)
	err := x.runInstance(ctx, inst)
	if err == nil {
		g.ran(inst, started)
	}
	x.settled(inst, err)
	return err
}

// admit starts the guard with the rollout's first instance and returns the
// trip once it has tripped. An `always` step of an item that began still
// runs: it is the playbook's own clean-up after a failure.
func (g *guard) admit(ctx context.Context, inst *StepInstance) *GuardTrip {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.trip != nil && !(inst.Step.Always && g.began[inst.Key]) {
		g.refused[inst.Key] = true
		return g.trip
	}
	g.began[inst.Key] = true
	if !g.started && !g.ended {
		g.started = true
		gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.cancel = cancel
		go g.loop(gctx)
	}
	return nil
}

// ran notes what a finished instance tells about servers: which item a
// server belongs to, and which item was enabled last.
func (g *guard) ran(inst *StepInstance, started time.Time) {
	if inst.Step.Run.Resource != g.cfg.Metrics {
		return
	}
	res, ok := g.x.result(inst)
	if !ok || res.IsNull() || !res.Type().IsObjectType() || !res.Type().HasAttribute("server") {
		return
	}
	srv := res.GetAttr("server")
	if srv.IsNull() || !srv.IsKnown() || srv.Type() != cty.String {
		return
	}
	srv, _ = srv.Unmark()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.servers[srv.AsString()] = inst.Key
	if inst.Step.Run.Action.Name == "enable" {
		g.enabled = append(g.enabled, inst.Key)
		if _, ok := g.enabledAt[srv.AsString()]; !ok {
			g.enabledAt[srv.AsString()] = started
		}
	}
}

// enabling notes, as an item's enable on the guarded load balancer
// begins, that its servers (known from the item's earlier steps there,
// such as its drain) count against max_server_errors from now: the load
// balancer may send them requests before the enable returns.
func (g *guard) enabling(inst *StepInstance, at time.Time) {
	if inst.Step.Run.Resource != g.cfg.Metrics || inst.Step.Run.Action.Name != "enable" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for srv, key := range g.servers {
		if key == inst.Key {
			g.enabledAt[srv] = at
		}
	}
}

// settled notes that inst will not run (again) in this walk; a failure
// settles everything the walk will skip because of it (its dependents,
// but those that run anyway). A guard whose rollout has no instance left
// stops sampling.
func (x *execution) settled(inst *StepInstance, err error) {
	if len(x.guards) == 0 {
		return
	}
	addrs := []string{inst.Addr}
	if err != nil {
		seen := map[string]bool{inst.Addr: true}
		for queue := []string{inst.Addr}; len(queue) > 0; queue = queue[1:] {
			for _, d := range x.g.DAG.Dependents(queue[0]) {
				if seen[d] {
					continue
				}
				seen[d] = true
				queue = append(queue, d)
				if di, ok := x.g.DAG.Vertex(d).(*StepInstance); ok && !di.Step.Always {
					addrs = append(addrs, d)
				}
			}
		}
	}
	for _, g := range x.guards {
		g.settle(addrs)
	}
}

func (g *guard) settle(addrs []string) {
	g.mu.Lock()
	for _, a := range addrs {
		delete(g.pending, a)
	}
	end := len(g.pending) == 0
	g.mu.Unlock()
	if end {
		g.stop()
	}
}

// stop ends the sampling and waits for it; safe to call more than once.
func (g *guard) stop() {
	g.mu.Lock()
	g.ended = true
	cancel, started := g.cancel, g.started
	g.mu.Unlock()
	if !started {
		return
	}
	cancel()
	<-g.done
}

// stopGuards ends every guard's sampling (the walk is over).
func (x *execution) stopGuards() {
	for _, g := range x.guards {
		g.stop()
	}
}

// trips returns the guards that tripped, by rollout name.
func (x *execution) trips() map[string]*GuardTrip {
	out := map[string]*GuardTrip{}
	for name, g := range x.guards {
		g.mu.Lock()
		if g.trip != nil {
			out[name] = g.trip
		}
		g.mu.Unlock()
	}
	return out
}

// untouched reports whether key is an item the guard refused before it
// did anything: there is nothing of it to roll back.
func (g *guard) untouched(key string, outcomes map[string]*dag.Outcome) bool {
	g.mu.Lock()
	refused := g.refused[key]
	g.mu.Unlock()
	if !refused {
		return false
	}
	for _, inst := range g.x.g.itemInsts[g.rollout.Name][key] {
		if o := outcomes[inst.Addr]; o != nil && o.State == dag.Done {
			return false
		}
	}
	return true
}

func (g *guard) loop(ctx context.Context) {
	defer close(g.done)
	if len(g.probes) > 0 {
		probing := make(chan struct{})
		go func() {
			defer close(probing)
			g.runProbes(ctx)
		}()
		defer func() { <-probing }() // the probes end with the sampler, before done
	}
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	for {
		g.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample takes one reading, journals it and checks the budgets.
func (g *guard) sample(ctx context.Context) {
	if g.cfg.Metrics == nil {
		g.sampleProbes(ctx)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, g.sampleTimeout)
	resp := g.provider.Invoke(sctx, plugins.InvokeRequest{Action: g.cfg.Action.Name, Args: cty.EmptyObjectVal})
	cancel()
	if ctx.Err() != nil {
		return // stopped while asking: not a sample
	}
	now := time.Now()
	var r reading
	var err error
	if resp.Diagnostics.HasErrors() {
		err = diagsError(resp.Diagnostics.HCL(nil))
	} else {
		r, err = readCounters(resp.Result, g.cfg)
	}
	r.at = now
	s := journal.Sample{Rollout: g.rollout.Name, At: now}
	g.mu.Lock()
	g.total++
	s.Probes = g.probeCounts()
	if err != nil {
		g.failed++
		s.Error = err.Error()
		var trip *GuardTrip
		if g.trip == nil && len(g.probes) > 0 {
			trip = g.check() // the probes still count
			g.trip = trip
		}
		g.mu.Unlock()
		if trip != nil {
			defer g.tripped(ctx, trip)
		}
		g.x.emit(Event{Type: StepProgress, Address: g.rollout.Address(), Message: fmt.Sprintf("traffic guard: sample failed (%s); it does not count against the budget", err)})
		g.journal(s)
		return
	}
	b := r.backend
	s.Backend = &b
	names := make([]string, 0, len(r.servers))
	for name := range r.servers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := r.servers[name]
		if prev, ok := g.last[name]; !ok || c.Errors() != prev {
			s.Servers = append(s.Servers, journal.ServerCounters{Name: name, Counters: c})
		}
		g.last[name] = c.Errors()
	}
	g.window = append(g.window, r)
	for len(g.window) > 1 && g.window[0].at.Before(now.Add(-g.cfg.Window)) {
		g.window = g.window[1:]
	}
	var trip *GuardTrip
	if g.trip == nil {
		trip = g.check()
		g.trip = trip
	}
	g.mu.Unlock()
	g.journal(s)
	if trip != nil {
		g.tripped(ctx, trip)
	}
}

// sampleProbes is a probe-only guard's sample: the probes' counts,
// journaled, and the budgets checked.
func (g *guard) sampleProbes(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	g.total++
	s := journal.Sample{Rollout: g.rollout.Name, At: now, Probes: g.probeCounts()}
	var trip *GuardTrip
	if g.trip == nil {
		trip = g.check()
		g.trip = trip
	}
	g.mu.Unlock()
	g.journal(s)
	if trip != nil {
		g.tripped(ctx, trip)
	}
}

// tripped says the trip and, under rollback, drains the blamed item.
func (g *guard) tripped(ctx context.Context, trip *GuardTrip) {
	g.x.emit(Event{Type: StepFailed, Address: g.rollout.Address(), Error: trip.Error(), Time: trip.At})
	g.drainBlamed(context.WithoutCancel(ctx), trip)
}

// drainBlamed, under on_failure = "rollback", takes the blamed item's
// server out of rotation at once (the undo of its enable, when that has
// finished), rather than when the walk is over: clients stop meeting its
// errors while the rollout's running steps finish. The rest of the item
// is rolled back after the walk, as any.
func (g *guard) drainBlamed(ctx context.Context, trip *GuardTrip) {
	if g.rollout.OnFailure != playbooks.OnFailureRollback || trip.Blamed == "" {
		return
	}
	for _, inst := range g.x.g.itemInsts[g.rollout.Name][trip.Blamed] {
		if inst.Step.Run.Resource != g.cfg.Metrics || inst.Step.Run.Action.Name != "enable" {
			continue
		}
		g.x.mu.Lock()
		_, done := g.x.results[inst.Addr]
		whenSkipped := g.x.whenSkipped[inst.Addr]
		g.x.mu.Unlock()
		if !done || whenSkipped {
			continue // still running, or never ran: the rollback after the walk sees to it
		}
		g.x.emit(Event{Type: RollbackStart, Address: inst.Addr, Key: trip.Blamed, Message: fmt.Sprintf("traffic guard: taking item %q out of rotation now (%s undone)", trip.Blamed, inst.Addr)})
		if err := g.x.undo(ctx, inst); err == nil {
			g.mu.Lock()
			g.undone = append(g.undone, inst.Addr)
			g.mu.Unlock()
		}
	}
}

// undoneEarly reports whether inst was undone by the guard already.
func (x *execution) undoneEarly(inst *StepInstance) bool {
	g := x.guardOf(inst)
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range g.undone {
		if a == inst.Addr {
			return true
		}
	}
	return false
}

func (g *guard) journal(s journal.Sample) {
	if g.x.opts.Journal != nil {
		_ = g.x.opts.Journal.RecordSample(s) // a lost sample is harmless; a broken journal fails the steps
	}
}

// errorsOf sums, over consecutive readings of the window, how much the
// error counters grew (a counter that went back counts from zero).
func errorsOf(window []reading, pick func(reading) (journal.Counters, bool)) journal.Counters {
	var sum journal.Counters
	for i := 1; i < len(window); i++ {
		a, okA := pick(window[i-1])
		b, okB := pick(window[i])
		if !okA || !okB {
			continue
		}
		sum.Requests += grew(a.Requests, b.Requests)
		sum.HTTP5xx += grew(a.HTTP5xx, b.HTTP5xx)
		sum.ConnectionErrors += grew(a.ConnectionErrors, b.ConnectionErrors)
		sum.ResponseErrors += grew(a.ResponseErrors, b.ResponseErrors)
	}
	return sum
}

func grew(a, b int64) int64 {
	if b < a {
		return b
	}
	return b - a
}

// check compares the window with the budgets: a server's first (it names
// the culprit), then the backend's. Caller holds mu.
func (g *guard) check() *GuardTrip {
	probes, probeRequests, probeFailed := g.probeWindow(time.Now())
	if len(g.window) < 2 && probeRequests == 0 {
		return nil
	}
	cfg := g.cfg
	newTrip := func(counter, server string, value int64, c journal.Counters, budget string) *GuardTrip {
		t := &GuardTrip{Rollout: g.rollout.Name, Counter: counter, Server: server, Value: value, Requests: c.Requests, Budget: budget,
			Window: cfg.Window, Breakdown: c, Samples: g.total, FailedSamples: g.failed, At: time.Now(), ProbesOnly: cfg.Metrics == nil}
		if server == "" {
			t.Probes = probes
			t.Requests += probeRequests
		}
		if item, ok := g.servers[server]; ok && server != "" && g.began[item] {
			t.Blamed = item
		} else if len(g.enabled) > 0 {
			t.Blamed = g.enabled[len(g.enabled)-1]
		}
		return t
	}
	if cfg.MaxServerErrors >= 0 && len(g.window) >= 2 {
		// Only the servers this rollout enabled, from their enable on:
		// the others run the old version, and may refuse writes (503)
		// under a read-only mode the run put them in, on purpose.
		names := make([]string, 0, len(g.enabledAt))
		for name := range g.enabledAt {
			names = append(names, name)
		}
		sort.Strings(names)
		var worst string
		var worstC journal.Counters
		for _, name := range names {
			from := 0 // the last reading before the enable began is the base
			for from+1 < len(g.window) && g.window[from+1].at.Before(g.enabledAt[name]) {
				from++
			}
			c := errorsOf(g.window[from:], func(r reading) (journal.Counters, bool) { c, ok := r.servers[name]; return c, ok })
			if c.Errors() > int64(cfg.MaxServerErrors) && c.Errors() > worstC.Errors() {
				worst, worstC = name, c
			}
		}
		if worst != "" {
			return newTrip("errors", worst, worstC.Errors(), worstC, fmt.Sprintf("max_server_errors = %d", cfg.MaxServerErrors))
		}
	}
	// The backend's counters, and the probes' requests: a failed probe
	// request is an error of the window.
	backend := errorsOf(g.window, func(r reading) (journal.Counters, bool) { return r.backend, true })
	errs, requests := backend.Errors()+probeFailed, backend.Requests+probeRequests
	if cfg.MaxErrors >= 0 && errs > int64(cfg.MaxErrors) {
		return newTrip("errors", "", errs, backend, fmt.Sprintf("max_errors = %d", cfg.MaxErrors))
	}
	if cfg.MaxErrorRate >= 0 && requests >= int64(cfg.MinRequests) && requests > 0 &&
		float64(errs)*100 > cfg.MaxErrorRate*float64(requests) {
		return newTrip("error rate", "", errs, backend, fmt.Sprintf("max_error_rate = %s%%", strconv.FormatFloat(cfg.MaxErrorRate, 'f', -1, 64)))
	}
	return nil
}

// readCounters reads a metrics result (already of the contract's type once
// conformed).
func readCounters(v cty.Value, cfg *playbooks.Guard) (reading, error) {
	v, err := conformResult(v, cfg.Action)
	if err != nil {
		return reading{}, err
	}
	if v.IsNull() {
		return reading{}, fmt.Errorf("%s.metrics returned no counters", cfg.Metrics.Address())
	}
	r := reading{servers: map[string]journal.Counters{}}
	r.backend = counters(v.GetAttr("backend"))
	if sv := v.GetAttr("servers"); !sv.IsNull() {
		for it := sv.ElementIterator(); it.Next(); {
			_, s := it.Element()
			if s.IsNull() || s.GetAttr("name").IsNull() {
				continue
			}
			r.servers[s.GetAttr("name").AsString()] = counters(s)
		}
	}
	return r, nil
}

func counters(v cty.Value) journal.Counters {
	if v.IsNull() || !v.Type().IsObjectType() {
		return journal.Counters{}
	}
	n := func(name string) int64 {
		if !v.Type().HasAttribute(name) {
			return 0
		}
		a := v.GetAttr(name)
		if a.IsNull() || !a.IsKnown() || a.Type() != cty.Number {
			return 0
		}
		i, _ := a.AsBigFloat().Int64()
		return i
	}
	return journal.Counters{
		Requests: n("requests"), HTTP1xx: n("http_1xx"), HTTP2xx: n("http_2xx"), HTTP3xx: n("http_3xx"),
		HTTP4xx: n("http_4xx"), HTTP5xx: n("http_5xx"), ConnectionErrors: n("connection_errors"),
		ResponseErrors: n("response_errors"), Retries: n("retries"), Redispatches: n("redispatches"), Sessions: n("sessions"),
	}
}

// guardSummary is one line per tripped guard, for the end of a run.
func guardSummary(trips map[string]*GuardTrip) string {
	var lines []string
	for _, t := range trips {
		lines = append(lines, t.Error())
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// guardStanding says, for each guard that tripped, why, and what became of
// the item it blamed.
func (x *execution) guardStanding() []string {
	var lines []string
	for name, t := range x.trips() {
		line := "traffic guard: " + t.Error()
		if r := x.g.Playbook.Rollout(name); r != nil && t.Blamed != "" && r.OnFailure == playbooks.OnFailureRollback {
			line += fmt.Sprintf("; item %q was rolled back (on_failure = \"rollback\")", t.Blamed)
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return lines
}
