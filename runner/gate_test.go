package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
)

// gated is upgrade with a gate after its first batch.
func gated(gate string) string {
	return strings.Replace(upgrade, "  depends_on = [step.copy]\n", "  depends_on = [step.copy]\n"+gate+"\n", 1)
}

func TestApprovalGatePausesAfterTheBatchAndTheNextRunPassesIt(t *testing.T) {
	f := newFixture(t, gated(`  pause_after_batch = [1]`))
	res, err, rec := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Paused, res.Status)
	require.NotNil(t, res.Hold)
	require.NotNil(t, res.Hold.Gate)
	assert.Equal(t, `gate.up["after batch 1"]`, res.Hold.Gate.Addr)
	assert.Equal(t, []string{"drain:n1", "enable:n1"}, f.lb.Calls(), "only the first batch ran")
	assert.Nil(t, res.Returned, "a gate undoes nothing")
	assert.Empty(t, res.Failed)

	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Paused, run.Status)
	assert.Equal(t, `gate.up["after batch 1"]`, runner.WaitingGate(run))
	assert.Equal(t, journal.Pending, run.Steps[`step.drain["n2"]`].Status)
	last := rec.of(runner.RunFinished)
	require.Len(t, last, 1)
	assert.Contains(t, last[0].Message, `paused at gate.up["after batch 1"]`)
	assert.Contains(t, last[0].Message, "5 steps done, 8 not started;", "the gate is not counted as a step")

	res, err, _ = f.run(runner.Options{Approver: "alice@ops"})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Equal(t, []string{"drain:n1", "enable:n1", "drain:n2", "enable:n2", "drain:n3", "enable:n3"}, f.lb.Calls())
	run, err = f.j.Load()
	require.NoError(t, err)
	g := run.Steps[`gate.up["after batch 1"]`]
	require.NotNil(t, g)
	assert.Equal(t, journal.Done, g.Status)
	assert.Equal(t, "approved by alice@ops", g.Note)
	assert.Empty(t, runner.WaitingGate(run))
}

func TestBakeGateWaitsBetweenBatches(t *testing.T) {
	f := newFixture(t, gated(`  bake = "150ms"`))
	var enabled, drained []time.Time
	rec := &timing{on: map[string]*[]time.Time{"enable": &enabled, "drain": &drained}}
	f.lb.InvokeFn = rec.invoke
	res, err, _ := f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	require.Len(t, enabled, 3)
	require.Len(t, drained, 3)
	for i := 1; i < 3; i++ {
		assert.GreaterOrEqual(t, drained[i].Sub(enabled[i-1]), 150*time.Millisecond, "batch %d began before the bake ended", i+1)
	}
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, "baked 150ms", run.Steps[`gate.up["bake after batch 2"]`].Note)
	assert.Nil(t, run.Steps[`gate.up["bake after batch 3"]`], "no bake after the last batch")
}

func TestGateBeforeAnItemAndTarget(t *testing.T) {
	f := newFixture(t, gated(`  gate "last one" {
    before = "n3"
  }`))
	res, err, _ := f.run(runner.Options{Target: "n1"})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Paused, res.Status)
	require.NotNil(t, res.Hold)
	assert.Nil(t, res.Hold.Gate)
	assert.Equal(t, "n1", res.Hold.Target)
	assert.Equal(t, []string{"drain:n1", "enable:n1"}, f.lb.Calls(), "--target runs its item only")

	res, err, _ = f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.NotNil(t, res.Hold.Gate)
	assert.Equal(t, `gate.up["last one"]`, res.Hold.Gate.Addr)
	assert.Equal(t, []string{"drain:n1", "enable:n1", "drain:n2", "enable:n2"}, f.lb.Calls())

	res, err, _ = f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Len(t, f.lb.Calls(), 6)
}

func TestTargetThatIsNoItemIsRefused(t *testing.T) {
	f := newFixture(t, upgrade)
	_, err, _ := f.run(runner.Options{Target: "n4"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--target "n4" is not an item`)
	assert.Contains(t, err.Error(), `did you mean "n1"?`)
	assert.Empty(t, f.lb.Calls())
}

func TestGateDiagnostics(t *testing.T) {
	for name, tc := range map[string]struct{ gate, want string }{
		"after the last batch": {`  gate "late" {
    after_batch = 3
  }`, "main.hcl:22:3: Gate after the last batch"},
		"unknown item": {`  gate "x" {
    before = "n9"
  }`, "Gate before an unknown item"},
		"no position": {`  gate "x" {
    bake = "1s"
  }`, "Gate without a position"},
		"both positions": {`  gate "x" {
    before      = "n2"
    after_batch = 1
  }`, "Conflicting gate position"},
		"bad bake":  {`  bake = "soon"`, "Invalid bake"},
		"bad pause": {`  pause_after_batch = ["one"]`, "Invalid pause_after_batch"},
	} {
		t.Run(name, func(t *testing.T) {
			pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": cluster + gated(tc.gate)}, playbooks.LoadOptions{Env: []string{}})
			if !diags.HasErrors() {
				_, diags = runner.BuildGraph(pb)
			}
			require.True(t, diags.HasErrors())
			assert.Contains(t, diagLine(diags), tc.want)
		})
	}
}

// timing records when each named action was called.
type timing struct {
	mu sync.Mutex
	on map[string]*[]time.Time
}

func (r *timing) invoke(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.on[action]; ok {
		*at = append(*at, time.Now())
	}
	return cty.NilVal, nil
}

// diagLine renders diagnostics as file:line:col: summary: detail lines.
func diagLine(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column)
		}
		fmt.Fprintf(&b, "%s: %s\n", d.Summary, d.Detail)
	}
	return b.String()
}

func TestPlanShowsGates(t *testing.T) {
	f := newFixture(t, gated(`  pause_after_batch = [1]
  bake              = "30s"`))
	p, diags := runner.MakePlan(f.graph)
	require.False(t, diags.HasErrors(), diags.Error())
	var text, summary strings.Builder
	require.NoError(t, p.WriteText(&text))
	assert.Contains(t, text.String(), "\n   ||  gate.up[\"bake after batch 1\"]  after batch 1: bakes 30s before going on\n\n   ||  gate.up[\"after batch 1\"]  after batch 1: waits for an operator (upshift run again, or upshift approve)\n\nrollout \"up\" batch 2 of 3: n2")
	require.NoError(t, p.WriteSummary(&summary))
	assert.Equal(t, `Plan: 13 steps.
  rollout "up": 3 items in 3 batches (on_failure = halt)
    batch 1: n1
    || after batch 1: bakes 30s before going on
    || after batch 1: waits for an operator (upshift run again, or upshift approve)
    batch 2: n2
    || after batch 2: bakes 30s before going on
    batch 3: n3
`, summary.String())
}

// TestTargetLetsItsBatchMatesWait: --target's item runs to its end while
// the other item of its batch does not start.
func TestTargetLetsItsBatchMatesWait(t *testing.T) {
	f := newFixture(t, gated(`  max_parallel = 2`))
	res, err, _ := f.run(runner.Options{Target: "n1"})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Paused, res.Status)
	assert.Equal(t, []string{"drain:n1", "enable:n1"}, f.lb.Calls())
	assert.Equal(t, []string{"set_config:n1", "start:n1"}, f.nodes.Calls())
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Pending, run.Steps[`step.drain["n2"]`].Status)

	res, err, _ = f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
	assert.Len(t, f.lb.Calls(), 6)
}

// TestGateBeforeThePointOfNoReturnUndoesNothing: a gate that holds the run
// before its point of no return is a pause, not a stop: nothing is
// returned to the start (the nodes stay read-only as the run made them),
// and the next run goes on from there.
func TestGateBeforeThePointOfNoReturnUndoesNothing(t *testing.T) {
	f := newFixture(t, strings.Replace(shipped, "  depends_on = [step.copy]\n", "  depends_on = [step.copy]\n  gate \"first\" {\n    before = \"n1\"\n  }\n", 1))
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Paused, res.Status)
	assert.Nil(t, res.Returned, "a pause is not a stop: no return to the start")
	assert.Empty(t, res.PointOfNoReturn)
	assert.ElementsMatch(t, []string{"read_only:n1", "read_only:n2", "read_only:n3"}, f.nodes.Calls(), "read-only stays while the gate waits")
	assert.Empty(t, f.lb.Calls(), "no node was drained")

	res, err, _ = f.run(runner.Options{})
	require.NoError(t, err)
	assert.Equal(t, journal.Done, res.Status)
}
