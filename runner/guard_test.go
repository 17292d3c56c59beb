package runner_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

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

// guardLoops counts the goroutines sampling for a guard.
func guardLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "runner.(*guard).loop")
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
