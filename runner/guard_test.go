package runner_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// guarded is the upgrade rollout with a traffic guard; %s is on_failure,
// the second %s the guard's budgets.
const guarded = `
rollout "up" {
  over       = node_pool.cluster.nodes
  on_failure = "%s"
  guard {
    metrics  = load_balancer.front
    interval = "100ms"
    window   = "10s"
    %s
  }
  step "drain" {
    run = load_balancer.front.drain
    with {
      server = each.value.name
    }
  }
  step "point" {
    run = node_pool.cluster.set_config
    with {
      node  = each.value.name
      key   = "db"
      value = "b"
    }
  }
  step "start" {
    run                = node_pool.cluster.start
    point_of_no_return = true
    with {
      node = each.value.name
    }
  }
  step "enable" {
    run = load_balancer.front.enable
    with {
      server = each.value.name
    }
  }
}
`

// lbCounters is a load balancer whose metrics the test scripts: every
// metrics call adds 10 requests per server, and errPerCall 5xx to each
// server in bad; fail(n) makes the n-th call (1-based) fail.
type lbCounters struct {
	mu         sync.Mutex
	calls      int
	requests   map[string]int64
	errors     map[string]int64
	bad        map[string]bool
	errPerCall int64
	fail       func(n int) bool
	// callsSinceBad counts the calls since a server went bad; wake is
	// signalled at each.
	callsSinceBad int
	wake          chan struct{}
}

func newLBCounters() *lbCounters {
	return &lbCounters{requests: map[string]int64{}, errors: map[string]int64{}, bad: map[string]bool{}, errPerCall: 3, wake: make(chan struct{}, 1000)}
}

func counterObj(requests, errs int64, name string) cty.Value {
	attrs := map[string]cty.Value{}
	for _, n := range schema.CounterNames() {
		attrs[n] = cty.NumberIntVal(0)
	}
	attrs["sessions"] = cty.NumberIntVal(0)
	attrs["requests"] = cty.NumberIntVal(requests)
	attrs["http_2xx"] = cty.NumberIntVal(requests - errs)
	attrs["http_5xx"] = cty.NumberIntVal(errs)
	if name != "" {
		attrs["name"] = cty.StringVal(name)
	}
	return cty.ObjectVal(attrs)
}

func (l *lbCounters) metrics() (cty.Value, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if len(l.bad) > 0 {
		l.callsSinceBad++
		l.wake <- struct{}{}
	}
	if l.fail != nil && l.fail(l.calls) {
		return cty.NilVal, fmt.Errorf("admin socket: connection refused (call %d)", l.calls)
	}
	var servers []cty.Value
	var req, errs int64
	for _, n := range []string{"n1", "n2", "n3"} {
		l.requests[n] += 10
		if l.bad[n] {
			l.errors[n] += l.errPerCall
		}
		req += l.requests[n]
		errs += l.errors[n]
		servers = append(servers, counterObj(l.requests[n], l.errors[n], n))
	}
	return cty.ObjectVal(map[string]cty.Value{"backend": counterObj(req, errs, ""), "servers": cty.ListVal(servers)}), nil
}

func (l *lbCounters) goBad(server string) {
	l.mu.Lock()
	l.bad[server] = true
	l.mu.Unlock()
}

// waitCalls waits, bounded, until n metrics calls were made since a
// server went bad: the guard has then checked the samples before the
// last one.
func (l *lbCounters) waitCalls(t *testing.T, n int) {
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		c := l.callsSinceBad
		l.mu.Unlock()
		if c >= n {
			return
		}
		select {
		case <-l.wake:
		case <-deadline:
			t.Errorf("only %d metrics calls after the server went bad", c)
			return
		}
	}
}

func (l *lbCounters) isBad(server string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bad[server]
}

func (l *lbCounters) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// guardLoops counts the goroutines sampling or probing for a guard.
func guardLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "runner.(*guard).loop") + strings.Count(string(buf), "runner.(*guard).probe")
}

// noGuardLoops asserts, within a bounded wait, that no guard samples any
// more.
func noGuardLoops(t *testing.T) {
	t.Helper()
	for i := 0; i < 200 && guardLoops() > 0; i++ {
		runtime.Gosched()
		time.Sleep(5 * time.Millisecond)
	}
	assert.Zero(t, guardLoops(), "a guard still samples")
}

// badAfterEnable scripts the load balancer: enabling n2 makes it answer
// 5xx, and the enable returns once the guard has seen it (two samples
// later, and the failed one), so the next instance is the first one the guard decides on.
func badAfterEnable(t *testing.T, f *fixture, lb *lbCounters) {
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch action {
		case "metrics":
			return lb.metrics()
		case "enable":
			if args.GetAttr("server").AsString() == "n2" {
				lb.goBad("n2")
				lb.waitCalls(t, 4) // at most a failed sample, a baseline and the sample that trips, then one more: its check is done
			}
		}
		return cty.NilVal, nil
	}
}

func TestGuardHaltsTheRolloutWhenABudgetBreaks(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 10\n    max_server_errors = 2"))
	lb := newLBCounters()
	lb.fail = func(n int) bool { return n == 1 } // the first sample fails: said, not counted
	badAfterEnable(t, f, lb)

	res, err, rec := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Failed, res.Status)
	trip := res.Guards["up"]
	require.NotNil(t, trip)
	assert.Equal(t, "n2", trip.Server)
	assert.Equal(t, "n2", trip.Blamed)
	assert.Equal(t, "errors", trip.Counter)
	assert.Equal(t, 1, trip.FailedSamples)
	assert.Greater(t, trip.Value, int64(2))

	// No further instance of the rollout started: n3's first step failed
	// with the guard's message, and the rest of n3 was skipped.
	require.Equal(t, []string{`step.drain["n3"]`}, res.Failed)
	msg := res.Outcomes[`step.drain["n3"]`].Err.Error()
	assert.Regexp(t, `^not started: the traffic guard of rollout "up" halted it: server n2 counted \d+ errors \(http_5xx \d+, connection_errors 0, response_errors 0\) over the last 10s, over its budget of max_server_errors = 2; item "n2" blamed; 1 of \d+ samples failed$`, msg)
	for _, c := range f.lb.Calls() {
		assert.NotEqual(t, "drain:n3", c, "n3 was never drained")
	}
	assert.NotContains(t, f.nodes.Calls(), "stop:n2", "halt rolls nothing back")
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Contains(t, run.Steps[`step.drain["n3"]`].Error, "max_server_errors = 2")
	assert.Equal(t, journal.Skipped, run.Steps[`step.enable["n3"]`].Status)

	// The samples are in the journal, the failed one too.
	require.NotEmpty(t, run.Samples)
	assert.Contains(t, run.Samples[0].Error, "connection refused")
	assert.NotEmpty(t, run.Rates())
	var failedEvents []string
	for _, e := range rec.of(runner.StepFailed) {
		if e.Address == "rollout.up" {
			failedEvents = append(failedEvents, e.Error)
		}
	}
	assert.Len(t, failedEvents, 1, "the trip is said once")
	noGuardLoops(t)
}

func TestGuardRollsBackTheBlamedItem(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "rollback", "max_server_errors = 2"))
	lb := newLBCounters()
	badAfterEnable(t, f, lb)

	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.NotNil(t, res.Guards["up"])
	assert.Equal(t, "n2", res.Guards["up"].Blamed)

	// n2 finished every step, and is rolled back, newest first: enable
	// by drain, start by stop, point by restore_config, drain by enable.
	lbCalls := f.lb.Calls()
	var drains []string
	for _, c := range lbCalls {
		if c == "drain:n2" || c == "enable:n2" {
			drains = append(drains, c)
		}
	}
	assert.Equal(t, []string{"drain:n2", "enable:n2", "drain:n2", "enable:n2"}, drains)
	nodeCalls := f.nodes.Calls()
	assert.Equal(t, []string{"set_config:n2", "start:n2", "stop:n2", "restore_config:n2"}, only(nodeCalls, "n2"))
	assert.Empty(t, only(nodeCalls, "n3"), "n3 was refused before it did anything: nothing to undo")
	assert.Equal(t, []string{"set_config:n1", "start:n1"}, only(nodeCalls, "n1"), "n1 stays upgraded")

	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.RolledBack, run.Steps[`step.enable["n2"]`].Status)
	assert.Equal(t, journal.Done, run.Steps[`step.enable["n1"]`].Status)
	assert.Contains(t, strings.Join(res.Standing, "\n"), `item "n2" was rolled back`)
	noGuardLoops(t)
}

func only(calls []string, node string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasSuffix(c, ":"+node) {
			out = append(out, c)
		}
	}
	return out
}

// TestFlakyMetricsDoNotTripTheGuard: every other metrics call fails; the
// errors stay within the budget; the run finishes, every sample journaled.
func TestFlakyMetricsDoNotTripTheGuard(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 0"))
	lb := newLBCounters()
	lb.fail = func(n int) bool { return n%2 == 0 }
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch action {
		case "metrics":
			return lb.metrics()
		case "enable":
			if args.GetAttr("server").AsString() == "n1" {
				lb.goBad("none") // only counts the calls
				lb.waitCalls(t, 6)
			}
		}
		return cty.NilVal, nil
	}
	res, err, rec := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Empty(t, res.Guards)
	run, err := f.j.Load()
	require.NoError(t, err)
	var failed, ok int
	for _, s := range run.Samples {
		if s.Error != "" {
			failed++
		} else {
			ok++
		}
	}
	assert.GreaterOrEqual(t, failed, 3)
	assert.GreaterOrEqual(t, ok, 3)
	var said int
	for _, e := range rec.of(runner.StepProgress) {
		if e.Address == "rollout.up" && strings.Contains(e.Message, "sample failed") {
			said++
		}
	}
	assert.Equal(t, failed, said, "each failed sample is said")
	noGuardLoops(t)
}

// TestGuardStopsWhenTheRolloutEnds: a step after the rollout sees no guard
// sampling any more, and no metrics call is made while it runs.
func TestGuardStopsWhenTheRolloutEnds(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 5")+`
step "after" {
  run        = node_pool.cluster.exec
  depends_on = [rollout.up]
  with {
    node    = "n1"
    command = ["true"]
  }
}
`)
	lb := newLBCounters()
	f.lb.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "metrics" {
			return lb.metrics()
		}
		return cty.NilVal, nil
	}
	var loopsDuring, callsAtStart int
	f.nodes.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "exec" {
			callsAtStart = lb.Calls()
			loopsDuring = guardLoops()
		}
		return cty.NilVal, nil
	}
	before := guardLoops()
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Zero(t, before)
	assert.Zero(t, loopsDuring, "the guard stopped when the rollout's last instance ended")
	assert.Equal(t, callsAtStart, lb.Calls(), "no sample after the rollout")
	assert.GreaterOrEqual(t, callsAtStart, 1, "the guard sampled while the rollout ran")
	noGuardLoops(t)
}

// TestGuardStopsWhenTheRunFails: a step of another item fails, the walk
// skips the rest of the rollout; the guard stops with it.
func TestGuardStopsWhenTheRunFails(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 5"))
	lb := newLBCounters()
	f.lb.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "metrics" {
			return lb.metrics()
		}
		return cty.NilVal, nil
	}
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "start" && args.GetAttr("node").AsString() == "n2" {
			return cty.NilVal, errors.New("exit status 1")
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Empty(t, res.Guards)
	assert.Equal(t, []string{`step.start["n2"]`}, res.Failed)
	noGuardLoops(t)
}

// TestGuardDrainsTheBlamedServerAtOnce: the guard trips while n3's drain
// runs, n2's enable having finished: with on_failure = "rollback", n2 is
// taken out of rotation then and there (n3's drain is still running), and
// the rest of n2, and n3, are rolled back after the walk, n2's enable not
// undone twice.
func TestGuardDrainsTheBlamedServerAtOnce(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "rollback", "max_server_errors = 2"))
	lb := newLBCounters()
	drained := make(chan struct{})
	var once sync.Once
	var drainedDuring bool
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		server := ""
		if args.Type().IsObjectType() && args.Type().HasAttribute("server") {
			server = args.GetAttr("server").AsString()
		}
		switch {
		case action == "metrics":
			return lb.metrics()
		case action == "enable" && server == "n2":
			lb.goBad("n2")
		case action == "drain" && server == "n2" && lb.isBad("n2"):
			once.Do(func() { close(drained) })
		case action == "drain" && server == "n3":
			select {
			case <-drained:
				drainedDuring = true
			case <-time.After(10 * time.Second):
			}
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.NotNil(t, res.Guards["up"])
	assert.True(t, drainedDuring, "n2 was drained while n3's drain still ran")
	assert.Equal(t, []string{`step.point["n3"]`}, res.Failed, "the next instance was refused")
	assert.Equal(t, []string{"drain:n2", "enable:n2", "drain:n2", "enable:n2"}, only(f.lb.Calls(), "n2"), "n2's enable undone once, at once")
	assert.Equal(t, []string{"drain:n3", "enable:n3"}, only(f.lb.Calls(), "n3"), "n3's drain undone after the walk")
	assert.Equal(t, []string{"set_config:n2", "start:n2", "stop:n2", "restore_config:n2"}, only(f.nodes.Calls(), "n2"))
	noGuardLoops(t)
}

// TestServerBudgetCountsEnabledServersOnly: n3, on the old version, refuses
// requests (a read-only mode answering 503, say) until the rollout drains
// it; max_server_errors counts only the servers the rollout enabled, from
// their enable on, so it does not trip; max_errors, the backend's, would.
func TestServerBudgetCountsEnabledServersOnly(t *testing.T) {
	for _, tc := range []struct {
		budget string
		trips  bool
	}{{"max_server_errors = 2", false}, {"max_errors = 2", true}} {
		t.Run(tc.budget, func(t *testing.T) {
			f := newFixture(t, fmt.Sprintf(guarded, "halt", tc.budget))
			lb := newLBCounters()
			lb.goBad("n3")
			f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
				switch {
				case action == "metrics":
					return lb.metrics()
				case action == "drain" && args.GetAttr("server").AsString() == "n1":
					lb.waitCalls(t, 4) // n3's errors over several samples
				case action == "drain" && args.GetAttr("server").AsString() == "n3":
					lb.mu.Lock()
					delete(lb.bad, "n3")
					lb.mu.Unlock()
				}
				return cty.NilVal, nil
			}
			res, err, _ := f.run(runner.Options{})
			if !tc.trips {
				require.NoError(t, err)
				assert.Empty(t, res.Guards)
			} else {
				require.ErrorIs(t, err, runner.ErrRunFailed)
				require.NotNil(t, res.Guards["up"])
				assert.Empty(t, res.Guards["up"].Server, "the backend's budget")
				assert.Contains(t, res.Guards["up"].Error(), "the backend counted")
			}
			noGuardLoops(t)
		})
	}
}

// probeServer is a loopback HTTP server a guard's probes request: it
// answers status (200 until set), counts the requests, and signals each.
type probeServer struct {
	*httptest.Server
	status   atomic.Int32
	requests atomic.Int64
	hit      chan struct{}
}

func newProbeServer(t *testing.T) *probeServer {
	p := &probeServer{hit: make(chan struct{}, 1)}
	p.status.Store(http.StatusOK)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.requests.Add(1)
		select {
		case p.hit <- struct{}{}:
		default:
		}
		w.WriteHeader(int(p.status.Load()))
	}))
	t.Cleanup(p.Close)
	return p
}

// waitRequests waits, bounded, until the server has answered n requests.
func (p *probeServer) waitRequests(t *testing.T, n int64) {
	deadline := time.After(10 * time.Second)
	for p.requests.Load() < n {
		select {
		case <-p.hit:
		case <-deadline:
			t.Errorf("only %d probe requests", p.requests.Load())
			return
		}
	}
}

// tripWatch records the events and closes tripped when a guard trips.
type tripWatch struct {
	rec     *recorder
	once    sync.Once
	tripped chan struct{}
}

func (w *tripWatch) Emit(e runner.Event) {
	w.rec.Emit(e)
	if e.Type == runner.StepFailed && e.Address == "rollout.up" {
		w.once.Do(func() { close(w.tripped) })
	}
}

func (w *tripWatch) wait(t *testing.T) {
	select {
	case <-w.tripped:
	case <-time.After(10 * time.Second):
		t.Error("the guard did not trip")
	}
}

// runWatched runs f as f.run does, its events through w.
func runWatched(f *fixture, w *tripWatch) (*runner.Result, error) {
	opts := runner.Options{Journal: f.j, Events: w,
		Providers: map[string]plugins.Provider{"load_balancer.front": f.lb, "database.main": f.db, "node_pool.cluster": f.nodes}}
	return runner.Run(context.Background(), f.graph, opts)
}

// probeOnly is the guarded rollout without a metrics source: %s is
// on_failure, the second %s the budgets and probes.
var probeOnly = strings.Replace(guarded, "    metrics  = load_balancer.front\n", "", 1)

func probeBlock(url, extra string) string {
	return fmt.Sprintf("probe {\n      url   = %q\n      every = \"10ms\"\n      %s\n    }", url, extra)
}

// TestProbeFailuresTripTheGuard: a guard with only a probe; the server
// behind it answers 503 from n1's enable on; the failed probe requests
// break max_errors, the message names the probe, and n2 is refused.
func TestProbeFailuresTripTheGuard(t *testing.T) {
	srv := newProbeServer(t)
	url := srv.URL + "/healthz"
	f := newFixture(t, fmt.Sprintf(probeOnly, "halt", "max_errors = 3\n    "+probeBlock(url, "")))
	w := &tripWatch{rec: &recorder{}, tripped: make(chan struct{})}
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "enable" && args.GetAttr("server").AsString() == "n1" {
			srv.status.Store(http.StatusServiceUnavailable)
			w.wait(t)
		}
		return cty.NilVal, nil
	}
	res, err := runWatched(f, w)
	require.ErrorIs(t, err, runner.ErrRunFailed)
	trip := res.Guards["up"]
	require.NotNil(t, trip)
	assert.True(t, trip.ProbesOnly)
	assert.Equal(t, "errors", trip.Counter)
	assert.Greater(t, trip.Value, int64(3))
	require.Len(t, trip.Probes, 1)
	assert.Equal(t, trip.Value, trip.Probes[0].Failed)
	require.Equal(t, []string{`step.drain["n2"]`}, res.Failed)
	msg := res.Outcomes[`step.drain["n2"]`].Err.Error()
	assert.Regexp(t, `^not started: the traffic guard of rollout "up" halted it: the probes counted \d+ errors \(probe `+regexp.QuoteMeta(url)+`: \d+ failed of \d+ over 10s \(last: status 503 Service Unavailable\)\) over the last 10s, over its budget of max_errors = 3; no item to blame; 0 of \d+ samples failed$`, msg)

	// The probe's counts are in the journal's samples.
	run, err := f.j.Load()
	require.NoError(t, err)
	require.NotEmpty(t, run.Samples)
	last := run.Samples[len(run.Samples)-1]
	require.Len(t, last.Probes, 1)
	assert.Equal(t, url, last.Probes[0].URL)
	assert.Greater(t, last.Probes[0].Failed, int64(3))
	assert.GreaterOrEqual(t, last.Probes[0].Requests, last.Probes[0].Failed)
	assert.Nil(t, last.Backend)
	noGuardLoops(t)
}

// TestProbeConnectionErrorsTripTheGuard: a probe whose URL answers
// nothing (a closed loopback port) fails each request; with the load
// balancer's counters clean, the guard still trips, on the probe.
func TestProbeConnectionErrorsTripTheGuard(t *testing.T) {
	srv := newProbeServer(t)
	url := srv.URL + "/healthz"
	srv.Close() // nothing listens there any more
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 2\n    "+probeBlock(url, `timeout = "1s"`)))
	lb := newLBCounters()
	w := &tripWatch{rec: &recorder{}, tripped: make(chan struct{})}
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch {
		case action == "metrics":
			return lb.metrics()
		case action == "enable" && args.GetAttr("server").AsString() == "n1":
			w.wait(t)
		}
		return cty.NilVal, nil
	}
	res, err := runWatched(f, w)
	require.ErrorIs(t, err, runner.ErrRunFailed)
	trip := res.Guards["up"]
	require.NotNil(t, trip)
	assert.False(t, trip.ProbesOnly)
	assert.Zero(t, trip.Breakdown.Errors(), "the load balancer counted no error")
	assert.Contains(t, trip.Error(), "the backend counted ")
	assert.Contains(t, trip.Error(), "(http_5xx 0, connection_errors 0, response_errors 0; probe "+url+": ")
	assert.Contains(t, trip.Error(), "connection refused")
	noGuardLoops(t)
}

// TestProbeSuccessesDoNotTrip: the probe's requests succeed; with a
// budget of no error at all, the guard, sampling the load balancer too,
// does not trip, and the journal's samples count the probe's requests.
func TestProbeSuccessesDoNotTrip(t *testing.T) {
	srv := newProbeServer(t)
	url := srv.URL + "/healthz"
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 0\n    max_error_rate = \"0%\"\n    min_requests = 1\n    "+probeBlock(url, "expect = [200]")))
	lb := newLBCounters()
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch {
		case action == "metrics":
			return lb.metrics()
		case action == "enable" && args.GetAttr("server").AsString() == "n1":
			srv.waitRequests(t, 5)
			lb.goBad("none") // only counts the calls
			lb.waitCalls(t, 3)
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Empty(t, res.Guards)
	run, err := f.j.Load()
	require.NoError(t, err)
	var most int64
	for _, s := range run.Samples {
		require.Len(t, s.Probes, 1)
		assert.Zero(t, s.Probes[0].Failed)
		most = max(most, s.Probes[0].Requests)
	}
	assert.GreaterOrEqual(t, most, int64(5), "the samples after the probe's requests count them")
	noGuardLoops(t)
}

// TestProbesStopWhenTheRolloutEnds: a probe-only guard; a step after the
// rollout sees no probe or sampler goroutine left.
func TestProbesStopWhenTheRolloutEnds(t *testing.T) {
	srv := newProbeServer(t)
	f := newFixture(t, fmt.Sprintf(probeOnly, "halt", "max_errors = 5\n    "+probeBlock(srv.URL+"/healthz", ""))+`
step "after" {
  run        = node_pool.cluster.exec
  depends_on = [rollout.up]
  with {
    node    = "n1"
    command = ["true"]
  }
}
`)
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "enable" && args.GetAttr("server").AsString() == "n1" {
			srv.waitRequests(t, 3) // the probe ran while the rollout did
		}
		return cty.NilVal, nil
	}
	loopsDuring := -1
	f.nodes.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "exec" {
			loopsDuring = guardLoops()
		}
		return cty.NilVal, nil
	}
	assert.Zero(t, guardLoops())
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Zero(t, loopsDuring, "the probes stopped when the rollout's last instance ended")
	assert.GreaterOrEqual(t, srv.requests.Load(), int64(3))
	noGuardLoops(t)
}

// TestProbeRequestsCountInTheErrorRate: a probe-only guard with a rate
// budget; the probe's requests are the window's requests, its failures
// the errors; the message says the rate; the password in the probe's URL
// is not shown. A plan shows the probe as the guard's source.
func TestProbeRequestsCountInTheErrorRate(t *testing.T) {
	srv := newProbeServer(t)
	url := strings.Replace(srv.URL, "http://", "http://probe:s3cret@", 1) + "/healthz"
	f := newFixture(t, fmt.Sprintf(probeOnly, "halt", "max_error_rate = \"50%\"\n    min_requests = 4\n    "+probeBlock(url, "expect = [204]")))
	p, diags := runner.MakePlan(f.graph)
	require.False(t, diags.HasErrors(), diags.Error())
	var b strings.Builder
	require.NoError(t, p.WriteText(&b))
	assert.NotContains(t, b.String(), "s3cret")
	assert.Contains(t, b.String(), "      guard: probe "+strings.Replace(url, "s3cret", "xxxxx", 1)+" every 100ms, max_error_rate 50% (from 4 requests) over 10s; broken -> on_failure\n")

	w := &tripWatch{rec: &recorder{}, tripped: make(chan struct{})}
	f.lb.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "enable" && args.GetAttr("server").AsString() == "n1" {
			w.wait(t) // 200 is not the 204 expected: every request fails
		}
		return cty.NilVal, nil
	}
	res, err := runWatched(f, w)
	require.ErrorIs(t, err, runner.ErrRunFailed)
	trip := res.Guards["up"]
	require.NotNil(t, trip)
	assert.Equal(t, "error rate", trip.Counter)
	assert.GreaterOrEqual(t, trip.Requests, int64(4))
	assert.Equal(t, trip.Requests, trip.Value, "every probe request failed")
	msg := trip.Error()
	assert.Contains(t, msg, "errors on the probes were 100.0% of its ")
	assert.Contains(t, msg, "(last: status 200 OK)")
	assert.NotContains(t, msg, "s3cret")
	run, err := f.j.Load()
	require.NoError(t, err)
	for _, s := range run.Samples {
		for _, pc := range s.Probes {
			assert.NotContains(t, pc.URL, "s3cret")
		}
	}
	noGuardLoops(t)
}
