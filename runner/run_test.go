package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// mockProvider is a provider whose behaviour tests set per action; it
// records every call.
type mockProvider struct {
	kind     schema.Kind
	mu       sync.Mutex
	calls    []string
	InvokeFn func(ctx context.Context, action string, args cty.Value) (cty.Value, error)
	CheckFn  func(action string, args cty.Value) plugins.CheckResponse
}

var _ plugins.Provider = (*mockProvider)(nil)

func (m *mockProvider) Schema(context.Context) (*schema.PluginSchema, error) {
	return schema.ContractPlugin(m.kind), nil
}
func (m *mockProvider) Configure(context.Context, plugins.ConfigureRequest) plugins.Diagnostics {
	return nil
}
func (m *mockProvider) Close() error { return nil }

func (m *mockProvider) Invoke(ctx context.Context, req plugins.InvokeRequest) plugins.InvokeResponse {
	m.mu.Lock()
	m.calls = append(m.calls, callName(req.Action, req.Args))
	m.mu.Unlock()
	if req.Progress != nil {
		req.Progress("working on " + req.Action)
	}
	var res cty.Value
	var err error
	if m.InvokeFn != nil {
		res, err = m.InvokeFn(ctx, req.Action, req.Args)
	}
	if err != nil {
		return plugins.InvokeResponse{Diagnostics: plugins.FromError(err)}
	}
	if res == cty.NilVal {
		res = defaultResult(m.kind, req.Action, req.Args)
	}
	return plugins.InvokeResponse{Result: res}
}

func (m *mockProvider) Check(_ context.Context, req plugins.InvokeRequest) plugins.CheckResponse {
	if m.CheckFn != nil {
		return m.CheckFn(req.Action, req.Args)
	}
	return plugins.CheckResponse{State: plugins.CheckUnknown}
}

func (m *mockProvider) Calls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.calls...)
}

func callName(action string, args cty.Value) string {
	for _, k := range []string{"node", "server", "to"} {
		if args.Type().IsObjectType() && args.Type().HasAttribute(k) && !args.GetAttr(k).IsNull() {
			return action + ":" + args.GetAttr(k).AsString()
		}
	}
	return action
}

// defaultResult fills every result attribute with something plausible.
func defaultResult(kind schema.Kind, action string, args cty.Value) cty.Value {
	a := schema.ContractAction(kind, action)
	attrs := map[string]cty.Value{}
	for _, at := range a.Result.Attributes {
		switch {
		case args.Type().HasAttribute(at.Name) && args.GetAttr(at.Name).Type().Equals(at.Type):
			attrs[at.Name] = args.GetAttr(at.Name)
		case at.Type == cty.String:
			attrs[at.Name] = cty.StringVal(at.Name + "-of-" + action)
		case at.Type == cty.Number:
			attrs[at.Name] = cty.NumberIntVal(0)
		case at.Type == cty.Bool:
			attrs[at.Name] = cty.True
		default:
			attrs[at.Name] = cty.NullVal(at.Type)
		}
	}
	if action == "copy" {
		attrs["name"] = args.GetAttr("to")
		attrs["dsn"] = cty.StringVal("postgres://admin:s3cret@db/" + args.GetAttr("to").AsString())
	}
	return cty.ObjectVal(attrs)
}

const cluster = `
node_pool "cluster" {
  plugin = "mock"
  nodes  = [{ name = "n1" }, { name = "n2" }, { name = "n3" }]
}
database "main" {
  plugin = "mock"
}
load_balancer "front" {
  plugin = "mock"
}
`

type fixture struct {
	t     *testing.T
	dir   string
	graph *runner.Graph
	lb    *mockProvider
	db    *mockProvider
	nodes *mockProvider
	j     *journal.Journal
}

func newFixture(t *testing.T, src string) *fixture {
	t.Helper()
	dir := t.TempDir()
	pb, diags := playbooks.NewParser().LoadFiles(dir, map[string]string{"main.hcl": cluster + src}, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	g, diags := runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	j, err := journal.OpenWithOptions(filepath.Join(dir, ".upshift", "state"), journal.Options{NoSync: true})
	require.NoError(t, err)
	return &fixture{t: t, dir: dir, graph: g, j: j,
		lb: &mockProvider{kind: schema.KindLoadBalancer}, db: &mockProvider{kind: schema.KindDatabase}, nodes: &mockProvider{kind: schema.KindNodePool}}
}

func (f *fixture) run(opts runner.Options) (*runner.Result, error, *recorder) {
	rec := &recorder{}
	opts.Providers = map[string]plugins.Provider{"load_balancer.front": f.lb, "database.main": f.db, "node_pool.cluster": f.nodes}
	opts.Journal = f.j
	opts.Events = rec
	res, err := runner.Run(context.Background(), f.graph, opts)
	return res, err, rec
}

type recorder struct {
	mu     sync.Mutex
	events []runner.Event
}

func (r *recorder) Emit(e runner.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) of(t runner.EventType) []runner.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runner.Event
	for _, e := range r.events {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

const upgrade = `
step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
}
rollout "up" {
  over       = node_pool.cluster.nodes
  depends_on = [step.copy]
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
      value = step.copy.result.dsn
    }
  }
  step "start" {
    run = node_pool.cluster.start
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

func TestRunInOrderAndResultsFeedLaterSteps(t *testing.T) {
	f := newFixture(t, upgrade)
	var values []string
	var mu sync.Mutex
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "set_config" {
			mu.Lock()
			values = append(values, args.GetAttr("value").AsString())
			mu.Unlock()
		}
		return cty.NilVal, nil
	}
	res, err, rec := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Equal(t, []string{"drain:n1", "enable:n1", "drain:n2", "enable:n2", "drain:n3", "enable:n3"}, f.lb.Calls())
	assert.Equal(t, []string{"set_config:n1", "start:n1", "set_config:n2", "start:n2", "set_config:n3", "start:n3"}, f.nodes.Calls())
	assert.Equal(t, []string{"postgres://admin:s3cret@db/b", "postgres://admin:s3cret@db/b", "postgres://admin:s3cret@db/b"}, values, "the copy's result reaches the later steps, unredacted")
	assert.Len(t, rec.of(runner.StepFinished), 13)
	assert.NotEmpty(t, rec.of(runner.StepProgress))

	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Done, run.Status)
	for addr, s := range run.Steps {
		assert.Equal(t, journal.Done, s.Status, addr)
		assert.NotContains(t, string(s.Args), "s3cret", "%s: sensitive arguments are redacted in the journal", addr)
		assert.NotContains(t, string(s.Result), "s3cret", addr)
	}
	assert.Contains(t, string(run.Steps[`step.point["n1"]`].Args), `"(sensitive)"`)
}

func TestFailureHaltsTheRolloutAndKeepsOthersServing(t *testing.T) {
	f := newFixture(t, upgrade+`
step "independent" {
  run = database.main.check
}
`)
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "start" && args.GetAttr("node").AsString() == "n2" {
			return cty.NilVal, errors.New("node n2 did not start")
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Failed, res.Status)
	assert.Equal(t, []string{`step.start["n2"]`}, res.Failed)
	assert.Equal(t, dag.Skipped, res.Outcomes[`step.enable["n2"]`].State)
	assert.Equal(t, dag.Skipped, res.Outcomes[`step.drain["n3"]`].State, "no further node is taken out")
	assert.Equal(t, dag.Done, res.Outcomes["step.independent"].State)
	assert.Equal(t, []string{"drain:n1", "enable:n1", "drain:n2"}, f.lb.Calls(), "only the failed node is out of the load balancer")

	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Failed, run.Status)
	assert.Equal(t, journal.Failed, run.Steps[`step.start["n2"]`].Status)
	assert.Contains(t, run.Steps[`step.start["n2"]`].Error, "node n2 did not start")
	assert.Equal(t, journal.Skipped, run.Steps[`step.drain["n3"]`].Status)

	// The operator fixes the cause; the next run resumes where it stopped.
	f.nodes.InvokeFn = nil
	before := len(f.lb.Calls())
	res, err, rec := f.run(runner.Options{})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	assert.Equal(t, []string{"enable:n2", "drain:n3", "enable:n3"}, f.lb.Calls()[before:], "done steps are not run again")
	assert.Len(t, rec.of(runner.StepRestored), 8)
}

func TestRetryAndTimeout(t *testing.T) {
	f := newFixture(t, `
step "flaky" {
  run = database.main.check
  retry {
    attempts = 3
    delay    = "1ms"
  }
}
step "slow" {
  run     = database.main.backup
  timeout = "50ms"
  with {
    to = "x"
  }
}
`)
	n := 0
	f.db.InvokeFn = func(ctx context.Context, action string, _ cty.Value) (cty.Value, error) {
		switch action {
		case "check":
			n++
			if n < 3 {
				return cty.NilVal, fmt.Errorf("attempt %d refused", n)
			}
		case "backup":
			<-ctx.Done()
			return cty.NilVal, ctx.Err()
		}
		return cty.NilVal, nil
	}
	res, err, rec := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, dag.Done, res.Outcomes["step.flaky"].State)
	assert.Equal(t, 3, n)
	assert.Len(t, rec.of(runner.StepRetrying), 2)
	assert.Equal(t, dag.Failed, res.Outcomes["step.slow"].State)
	assert.Contains(t, res.Outcomes["step.slow"].Err.Error(), "timed out after 50ms")
	run, _ := f.j.Load()
	assert.Equal(t, 3, run.Steps["step.flaky"].Attempts)
}

func TestInFlightStepOnResume(t *testing.T) {
	src := `
step "migrate" {
  run = node_pool.cluster.exec
  with {
    node    = "n1"
    command = ["migrate"]
  }
}
step "after" {
  run        = node_pool.cluster.start
  depends_on = [step.migrate]
  with {
    node = "n1"
  }
}
`
	// Simulate a runner that died during migrate: the journal says running.
	crash := func(f *fixture) {
		require.NoError(t, f.j.Begin(&journal.Run{ID: "crashed", Steps: map[string]*journal.Step{}}))
		require.NoError(t, f.j.Update(journal.Step{Address: "step.migrate", Status: journal.Running, Attempts: 1}))
	}

	t.Run("unknown: the operator decides", func(t *testing.T) {
		f := newFixture(t, src)
		crash(f)
		res, err, _ := f.run(runner.Options{})
		require.ErrorIs(t, err, runner.ErrRunFailed)
		assert.Empty(t, f.nodes.Calls(), "a non-idempotent step is not run again blindly")
		assert.Contains(t, res.Outcomes["step.migrate"].Err.Error(), "--rerun 'step.migrate'")

		res, err, _ = f.run(runner.Options{Rerun: []string{"step.migrate"}})
		require.NoError(t, err)
		assert.Equal(t, []string{"exec:n1", "start:n1"}, f.nodes.Calls())
		assert.Equal(t, journal.Done, res.Status)
	})
	t.Run("check says applied", func(t *testing.T) {
		f := newFixture(t, src)
		crash(f)
		f.nodes.CheckFn = func(action string, _ cty.Value) plugins.CheckResponse {
			return plugins.CheckResponse{State: plugins.CheckApplied, Result: cty.ObjectVal(map[string]cty.Value{"exit_code": cty.NumberIntVal(0), "stdout": cty.StringVal(""), "stderr": cty.StringVal("")})}
		}
		_, err, _ := f.run(runner.Options{})
		require.NoError(t, err)
		assert.Equal(t, []string{"start:n1"}, f.nodes.Calls(), "not run twice")
	})
	t.Run("check says not applied", func(t *testing.T) {
		f := newFixture(t, src)
		crash(f)
		f.nodes.CheckFn = func(string, cty.Value) plugins.CheckResponse {
			return plugins.CheckResponse{State: plugins.CheckNotApplied}
		}
		_, err, _ := f.run(runner.Options{})
		require.NoError(t, err)
		assert.Equal(t, []string{"exec:n1", "start:n1"}, f.nodes.Calls())
	})
}

// TestFailedStepThatTookEffect: a non-idempotent step recorded failed (its
// plugin died after the work but before answering) is not run again on
// resume when its plugin's check says the effect happened; it is when the
// check says it did not, or cannot tell.
func TestFailedStepThatTookEffect(t *testing.T) {
	src := `
step "migrate" {
  run = node_pool.cluster.exec
  with {
    node    = "n1"
    command = ["migrate"]
  }
}
`
	for name, tc := range map[string]struct {
		state plugins.CheckState
		calls []string
	}{
		"applied":     {plugins.CheckApplied, nil},
		"not applied": {plugins.CheckNotApplied, []string{"exec:n1"}},
		"unknown":     {plugins.CheckUnknown, []string{"exec:n1"}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, src)
			require.NoError(t, f.j.Begin(&journal.Run{ID: "failed", Steps: map[string]*journal.Step{}}))
			require.NoError(t, f.j.Update(journal.Step{Address: "step.migrate", Status: journal.Failed, Attempts: 1, Error: "plugin process exited during invoke"}))
			f.nodes.CheckFn = func(string, cty.Value) plugins.CheckResponse {
				return plugins.CheckResponse{State: tc.state, Result: cty.ObjectVal(map[string]cty.Value{"exit_code": cty.NumberIntVal(0), "stdout": cty.StringVal(""), "stderr": cty.StringVal("")})}
			}
			res, err, _ := f.run(runner.Options{})
			require.NoError(t, err)
			assert.Equal(t, journal.Done, res.Status)
			assert.Equal(t, tc.calls, f.nodes.Calls())
		})
	}
}

func TestWhenAndAlways(t *testing.T) {
	f := newFixture(t, `
rollout "up" {
  over = node_pool.cluster.nodes
  step "drain" {
    run = load_balancer.front.drain
    with {
      server = each.value.name
    }
  }
  step "optional" {
    run  = node_pool.cluster.touch
    when = each.key != "n1"
    with {
      node = each.key
      path = "m"
    }
  }
  step "start" {
    run = node_pool.cluster.start
    with {
      node = each.value.name
    }
  }
  step "enable" {
    run    = load_balancer.front.enable
    always = true
    with {
      server = each.value.name
    }
  }
}
`)
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "start" && args.GetAttr("node").AsString() == "n2" {
			return cty.NilVal, errors.New("boom")
		}
		return cty.NilVal, nil
	}
	res, _, _ := f.run(runner.Options{})
	assert.NotContains(t, f.nodes.Calls(), "touch:n1", "when = false skips the step")
	assert.Equal(t, dag.Done, res.Outcomes[`step.start["n1"]`].State, "a step after a skipped-by-condition one runs")
	assert.Contains(t, f.lb.Calls(), "enable:n2", "always = true runs after a failure in its item")
	assert.Equal(t, dag.Skipped, res.Outcomes[`step.drain["n3"]`].State, "but the rollout still halts")
}

// rollbackItem is a rollout whose items drain, stop and migrate a node,
// rolled back on failure.
const rollbackItem = `
rollout "up" {
  over       = node_pool.cluster.nodes
  on_failure = "rollback"
  step "drain" {
    run = load_balancer.front.drain
    with {
      server = each.value.name
    }
  }
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
  }
  step "migrate" {
    run = node_pool.cluster.exec
    with {
      node    = each.value.name
      command = ["migrate"]
    }
  }
}
`

func TestRollbackRunsUndoInReverse(t *testing.T) {
	f := newFixture(t, rollbackItem)
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "exec" && args.GetAttr("node").AsString() == "n1" {
			return cty.NilVal, errors.New("migration failed")
		}
		return cty.NilVal, nil
	}
	_, err, _ := f.run(runner.Options{})
	require.Error(t, err)
	assert.Equal(t, []string{"stop:n1", "exec:n1", "start:n1"}, f.nodes.Calls())
	assert.Equal(t, []string{"drain:n1", "enable:n1"}, f.lb.Calls())
}

// TestRollbackIsJournaledAndResumeRedoesTheItem checks what the journal says
// after a rollback (undone steps are rolled_back, recorded before their undo
// starts so a crash during it cannot leave them "done"), and that resuming
// runs the item again from its first undone step: its effects are gone.
func TestRollbackIsJournaledAndResumeRedoesTheItem(t *testing.T) {
	f := newFixture(t, rollbackItem)
	broken := true
	var stopDuringUndo journal.Status
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch {
		case action == "exec" && args.GetAttr("node").AsString() == "n2" && broken:
			return cty.NilVal, errors.New("migration failed")
		case action == "start":
			run, err := f.j.Load()
			require.NoError(t, err)
			stopDuringUndo = run.Steps[`step.stop["n2"]`].Status
		}
		return cty.NilVal, nil
	}
	_, err, _ := f.run(runner.Options{})
	require.Error(t, err)
	assert.Equal(t, journal.RolledBack, stopDuringUndo, "the journal knew of the undo before it ran")

	run, err := f.j.Load()
	require.NoError(t, err)
	for addr, want := range map[string]journal.Status{
		`step.drain["n1"]`:   journal.Done,
		`step.migrate["n1"]`: journal.Done,
		`step.drain["n2"]`:   journal.RolledBack,
		`step.stop["n2"]`:    journal.RolledBack,
		`step.migrate["n2"]`: journal.Failed,
		`step.drain["n3"]`:   journal.Skipped,
	} {
		require.Contains(t, run.Steps, addr)
		assert.Equal(t, want, run.Steps[addr].Status, addr)
	}
	assert.Equal(t, "undone by node_pool.cluster.start", run.Steps[`step.stop["n2"]`].Note)
	assert.Equal(t, "undone by load_balancer.front.enable", run.Steps[`step.drain["n2"]`].Note)
	var table strings.Builder
	require.NoError(t, journal.Format(&table, run))
	assert.Regexp(t, `step.stop\["n2"\]\s+rolled_back\s.*undone by node_pool.cluster.start`, table.String())

	// Fixed: resuming drains and stops n2 again before migrating it, and
	// leaves n1 alone.
	broken = false
	f.nodes.calls, f.lb.calls = nil, nil
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	assert.Equal(t, []string{"drain:n2", "drain:n3"}, f.lb.Calls())
	assert.Equal(t, []string{"stop:n2", "exec:n2", "stop:n3", "exec:n3"}, f.nodes.Calls())
}

// TestFailedUndoStopsTheRollbackAndIsRedoneOnResume: when an undo fails the
// rollback stops there (undoing further back on a half-undone item does
// more harm); the step whose undo failed is failed, earlier ones stay done.
func TestFailedUndoStopsTheRollbackAndIsRedoneOnResume(t *testing.T) {
	f := newFixture(t, rollbackItem)
	f.nodes.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		switch action {
		case "exec":
			return cty.NilVal, errors.New("migration failed")
		case "start":
			return cty.NilVal, errors.New("the service would not start")
		}
		return cty.NilVal, nil
	}
	_, err, _ := f.run(runner.Options{})
	require.Error(t, err)
	assert.Equal(t, []string{"drain:n1"}, f.lb.Calls(), "drain is not undone after start failed")
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Done, run.Steps[`step.drain["n1"]`].Status, "still drained: done is the truth")
	stop := run.Steps[`step.stop["n1"]`]
	assert.Equal(t, journal.Failed, stop.Status)
	assert.Contains(t, stop.Error, "its undo node_pool.cluster.start failed during rollback: the service would not start")

	// Fixed: the resume keeps n1's drain (still done), runs its stop again
	// (its undo may have half happened) and carries the item on.
	f.nodes.InvokeFn = nil
	lbBefore, nodesBefore := len(f.lb.Calls()), len(f.nodes.Calls())
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	nodeCalls := f.nodes.Calls()[nodesBefore:]
	require.NotEmpty(t, nodeCalls)
	assert.Equal(t, []string{"stop:n1", "exec:n1"}, nodeCalls[:2], "the failed-undo step runs again first")
	assert.NotContains(t, f.lb.Calls()[lbBefore:], "drain:n1", "n1's drain is done and not repeated")
	run, err = f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Done, run.Status)
	assert.Equal(t, journal.Done, run.Steps[`step.stop["n1"]`].Status)
}

func TestParallelismCap(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&b, "step \"s%d\" {\n  run = database.main.check\n}\n", i)
	}
	f := newFixture(t, b.String())
	var cur, peak int
	var mu sync.Mutex
	// The first calls wait until four are in flight (causally, not by a
	// sleep that a busy machine outlasts): a cap that held fewer would
	// time out, one that let more through would show a higher peak.
	full := make(chan struct{})
	f.db.InvokeFn = func(context.Context, string, cty.Value) (cty.Value, error) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		if cur == 4 && peak == 4 {
			select {
			case <-full:
			default:
				close(full)
			}
		}
		mu.Unlock()
		select {
		case <-full:
		case <-time.After(10 * time.Second):
		}
		mu.Lock()
		cur--
		mu.Unlock()
		return cty.NilVal, nil
	}
	_, err, _ := f.run(runner.Options{Parallelism: 4})
	require.NoError(t, err)
	assert.Equal(t, 4, peak)
}

func TestPluginDiagnosticNamesTheArgumentLine(t *testing.T) {
	f := newFixture(t, `
step "drain" {
  run = load_balancer.front.drain
  with {
    server = "nope"
  }
}
`)
	f.lb.InvokeFn = nil
	lb := &argErrorProvider{mockProvider: f.lb}
	res, err := runner.Run(context.Background(), f.graph, runner.Options{Providers: map[string]plugins.Provider{"load_balancer.front": lb, "database.main": f.db, "node_pool.cluster": f.nodes}})
	require.Error(t, err)
	msg := res.Outcomes["step.drain"].Err.Error()
	assert.Contains(t, msg, `argument "server"`)
	assert.Regexp(t, `main\.hcl:\d+`, msg)
	assert.Contains(t, msg, "no server named nope")
}

type argErrorProvider struct{ *mockProvider }

func (a *argErrorProvider) Invoke(context.Context, plugins.InvokeRequest) plugins.InvokeResponse {
	return plugins.InvokeResponse{Diagnostics: plugins.AttributeErrorf("server", "no server named nope in backend be")}
}

func TestJournalIsReadableAfterRun(t *testing.T) {
	f := newFixture(t, upgrade)
	_, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	entries, err := os.ReadDir(f.j.Path())
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	assert.Contains(t, names, "run.json")
}

func TestFinishedRunIsNotRepeated(t *testing.T) {
	f := newFixture(t, upgrade)
	first, err, _ := f.run(runner.Options{Digest: "d1"})
	require.NoError(t, err)
	calls := len(f.lb.Calls())

	res, err, rec := f.run(runner.Options{Digest: "d1"})
	require.NoError(t, err)
	assert.True(t, res.AlreadyDone)
	assert.Equal(t, first.RunID, res.RunID, "says which run finished")
	assert.Len(t, f.lb.Calls(), calls, "a finished run is not run twice")
	assert.Contains(t, rec.of(runner.RunFinished)[0].Message, "nothing to do: run "+first.RunID)
	assert.Contains(t, rec.of(runner.RunFinished)[0].Message, "--new-run")

	res, err, _ = f.run(runner.Options{Digest: "d2"})
	require.NoError(t, err)
	assert.True(t, res.AlreadyDone, "changed variables do not restart a finished upgrade")
	assert.Len(t, f.lb.Calls(), calls)

	res, err, _ = f.run(runner.Options{Digest: "d2", NewRun: true})
	require.NoError(t, err)
	assert.False(t, res.AlreadyDone)
	assert.NotEqual(t, first.RunID, res.RunID, "a new run has a new id")
	assert.Len(t, f.lb.Calls(), 2*calls, "--new-run runs it again")
	hist, err := f.j.History()
	require.NoError(t, err)
	assert.Len(t, hist, 1, "the first run is archived")
}

// failOn makes a mock fail the given action and succeed at any other.
func failOn(failing string) func(context.Context, string, cty.Value) (cty.Value, error) {
	return func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == failing {
			return cty.NilVal, errors.New("boom")
		}
		return cty.NilVal, nil
	}
}

// TestNewRunRefusedWhileUnfinished: --new-run never drops an unfinished
// run; it is resumed or aborted first.
func TestNewRunRefusedWhileUnfinished(t *testing.T) {
	f := newFixture(t, upgrade)
	f.nodes.InvokeFn = failOn("start")
	_, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	_, err, _ = f.run(runner.Options{NewRun: true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not finished")
	assert.Contains(t, err.Error(), "upshift abort")
}

// TestJournalOfAnotherClusterIsNotResumed: a journal records its cluster,
// and a run of another cluster neither resumes nor touches it.
func TestJournalOfAnotherClusterIsNotResumed(t *testing.T) {
	f := newFixture(t, upgrade)
	f.nodes.InvokeFn = failOn("start")
	a := &journal.Cluster{ID: strings.Repeat("a", 64)}
	b := &journal.Cluster{ID: strings.Repeat("b", 64)}
	_, err, _ := f.run(runner.Options{Cluster: a})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	before, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, a.ID, before.Cluster)
	calls := len(f.db.Calls())

	_, err, _ = f.run(runner.Options{Cluster: b})
	var mismatch *runner.ClusterMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.Contains(t, err.Error(), "aaaaaaaaaaaa")
	assert.Contains(t, err.Error(), "bbbbbbbbbbbb")
	assert.Len(t, f.db.Calls(), calls, "nothing ran")
	after, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, before, after, "the other cluster's journal is untouched")
}

// TestRunIDInExpressions: run.id is unknown in a plan ("known after the
// run starts") and the run's id during it, the same on resume.
func TestRunIDInExpressions(t *testing.T) {
	f := newFixture(t, `
step "backup" {
  run = database.main.backup
  with {
    to = "/backups/${run.id}/db.dump"
  }
}
step "fail" {
  run        = node_pool.cluster.exec
  depends_on = [step.backup]
  with {
    node    = "n1"
    command = ["x"]
  }
}
`)
	plan, diags := runner.MakePlan(f.graph)
	require.False(t, diags.HasErrors(), diags.Error())
	var text strings.Builder
	require.NoError(t, plan.WriteText(&text))
	assert.Contains(t, text.String(), "(known after the run starts)")

	var tos []string
	f.db.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		tos = append(tos, args.GetAttr("to").AsString())
		return cty.NilVal, nil
	}
	fails := true
	f.nodes.InvokeFn = func(context.Context, string, cty.Value) (cty.Value, error) {
		if fails {
			return cty.NilVal, errors.New("boom")
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.Equal(t, []string{"/backups/" + res.RunID + "/db.dump"}, tos)
	assert.Regexp(t, `^\d{8}T\d{6}Z-[0-9a-f]{12}$`, res.RunID)

	fails = false
	res2, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, res.RunID, res2.RunID, "a resumed run keeps its id")
	assert.Len(t, tos, 1, "the backup is not taken again on resume")
}

func TestRollbackOfACopyDropsWhatItMade(t *testing.T) {
	f := newFixture(t, `
rollout "up" {
  over       = node_pool.cluster.nodes
  on_failure = "rollback"
  step "copy" {
    run = database.main.copy
    with {
      to = "b_${each.key}"
    }
  }
  step "skip" {
    run  = node_pool.cluster.stop
    when = false
    with {
      node = each.value.name
    }
  }
  step "fail" {
    run = node_pool.cluster.exec
    with {
      node    = each.value.name
      command = ["x"]
    }
  }
}
`)
	var dropped []string
	f.db.InvokeFn = func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "drop" {
			dropped = append(dropped, args.GetAttr("name").AsString())
		}
		return cty.NilVal, nil
	}
	f.nodes.InvokeFn = func(context.Context, string, cty.Value) (cty.Value, error) { return cty.NilVal, errors.New("boom") }
	_, err, _ := f.run(runner.Options{})
	require.Error(t, err)
	assert.Equal(t, []string{"b_n1"}, dropped, "drop gets copy's result name")
	assert.Equal(t, []string{"exec:n1"}, f.nodes.Calls(), "a step skipped by when is not undone")
}

// TestReadingASkippedResultSaysWhy: a step skipped by its when has a null
// result; reading an attribute of it fails with the reason and the way
// out, and a guarded read works.
func TestReadingASkippedResultSaysWhy(t *testing.T) {
	f := newFixture(t, `
step "copy" {
  run  = database.main.copy
  when = false
  with {
    to = "b"
  }
}
step "point" {
  for_each = toset(["n1"])
  run      = node_pool.cluster.set_config
  with {
    node  = each.key
    key   = "db"
    value = step.copy.result.dsn
  }
}
step "guarded" {
  for_each = toset(["n2"])
  run      = node_pool.cluster.set_config
  with {
    node  = each.key
    key   = "db"
    value = step.copy.result == null ? "a" : step.copy.result.dsn
  }
}
`)
	_, err, rec := f.run(runner.Options{})
	require.Error(t, err)
	failed := rec.of(runner.StepFailed)
	require.Len(t, failed, 1)
	assert.Equal(t, `step.point["n1"]`, failed[0].Address)
	assert.Contains(t, failed[0].Error, "Attempt to get attribute from null value")
	assert.Contains(t, failed[0].Error, "(step.copy did not run, its when being false, so its result is null; a step that may be skipped is read with a guard")
	assert.Equal(t, []string{"set_config:n2"}, f.nodes.Calls(), "the guarded read ran")
}

// TestEmptyForEachRunsNothing: a for_each over an empty collection makes no
// instance at all (it used to make one unkeyed instance, run once with no
// each), and a step waiting on it runs at once.
func TestEmptyForEachRunsNothing(t *testing.T) {
	f := newFixture(t, `
step "backup" {
  for_each = toset([])
  run      = node_pool.cluster.backup_data
  with {
    node = each.key
    to   = "/backup/${each.key}"
  }
}
step "copy" {
  run        = database.main.copy
  depends_on = [step.backup]
  with {
    to = "b"
  }
}
`)
	for _, name := range f.graph.DAG.Names() {
		assert.False(t, strings.HasPrefix(name, "step.backup[") && name != "step.backup[*]", "instance %s of an empty for_each", name)
	}
	assert.Nil(t, f.graph.DAG.Vertex("step.backup"), "no unkeyed instance of a keyed step")
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Empty(t, f.nodes.Calls(), "no backup_data call for an empty for_each")
	assert.Equal(t, []string{"copy:b"}, f.db.Calls())
}

// TestAResultThatDoesNotFitFailsTheStep: a provider's result is checked
// against the action's result schema (schema.Conform), and a problem names
// its path, so a plugin that is not written with the SDK cannot hand later
// steps a value of the wrong shape.
func TestAResultThatDoesNotFitFailsTheStep(t *testing.T) {
	f := newFixture(t, `
step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
}
`)
	f.db.InvokeFn = func(context.Context, string, cty.Value) (cty.Value, error) {
		return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "dsn": cty.ListValEmpty(cty.String)}), nil
	}
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	run, lerr := f.j.Load()
	require.NoError(t, lerr)
	msg := run.Steps["step.copy"].Error
	assert.Contains(t, msg, "does not fit action copy")
	assert.Contains(t, msg, "dsn", "the problem names the attribute")
	assert.Equal(t, []string{"step.copy"}, res.Failed)
}
