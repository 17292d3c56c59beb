package runner_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
)

// shipped is the shape of the shipped playbook: cluster-wide read-only,
// backup and copy, then per node drain ... start (the point of no return)
// and enable.
const shipped = `
preflight "lb" {
  run = load_balancer.front.preflight
  with {
    servers = [for n in node_pool.cluster.nodes : n.name]
  }
}
step "read_only" {
  for_each = { for n in node_pool.cluster.nodes : n.name => n }
  run      = node_pool.cluster.read_only
  with {
    node    = each.key
    enabled = true
  }
}
step "backup" {
  run = database.main.backup
  with {
    to = "/backups/a"
  }
  depends_on = [step.read_only]
}
step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
  depends_on = [step.backup]
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
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
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
  step "migrate" {
    run = node_pool.cluster.exec
    with {
      node    = each.value.name
      command = ["migrate"]
    }
  }
  step "marker" {
    run = node_pool.cluster.touch
    with {
      node = each.value.name
      path = "rolling-upgrade"
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

func failExecOn(node string, failing *bool) func(context.Context, string, cty.Value) (cty.Value, error) {
	return func(_ context.Context, action string, args cty.Value) (cty.Value, error) {
		if action == "exec" && args.GetAttr("node").AsString() == node && *failing {
			return cty.NilVal, errors.New("migration failed")
		}
		return cty.NilVal, nil
	}
}

// A migration that fails on the first node, before the point of no
// return, returns the cluster to where it began: every step undone newest
// first (the node's config put back, started, enabled; B dropped; the
// read-only mode released on every node), the journal says so, and the
// next run begins again from read_only.
func TestFailureBeforeThePointOfNoReturnReturnsToTheStart(t *testing.T) {
	f := newFixture(t, shipped)
	failing := true
	f.nodes.InvokeFn = failExecOn("n1", &failing)
	res, err, _ := f.run(runner.Options{Preflight: true})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.NotNil(t, res.Returned)
	assert.True(t, res.Returned.OK(), res.Returned.Summary())
	assert.Empty(t, res.PointOfNoReturn)
	assert.Nil(t, res.Standing)

	assert.Equal(t, []string{
		"read_only:n1", "read_only:n2", "read_only:n3", "stop:n1", "set_config:n1", "exec:n1",
		// the return, newest first
		"restore_config:n1", "start:n1", "read_write:n1", "read_write:n2", "read_write:n3",
	}, sortedEnds(f.nodes.Calls(), 3), "node calls")
	assert.Equal(t, []string{"preflight", "drain:n1", "enable:n1"}, f.lb.Calls())
	assert.Equal(t, []string{"backup:/backups/a", "copy:b", "drop"}, f.db.Calls())

	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.Failed, run.Status)
	for addr, want := range map[string]journal.Status{
		`step.read_only["n1"]`: journal.RolledBack,
		`step.backup`:          journal.RolledBack,
		`step.copy`:            journal.RolledBack,
		`step.drain["n1"]`:     journal.RolledBack,
		`step.stop["n1"]`:      journal.RolledBack,
		`step.point["n1"]`:     journal.RolledBack,
		`step.migrate["n1"]`:   journal.Failed,
		`step.drain["n2"]`:     journal.Skipped,
	} {
		assert.Equal(t, want, run.Steps[addr].Status, addr)
	}
	assert.Equal(t, "undone by node_pool.cluster.restore_config", run.Steps[`step.point["n1"]`].Note)
	require.NotNil(t, run.Ending, "the journal says where the run left the cluster")
	assert.Contains(t, run.Ending.Returned, "the cluster was returned to where it began")
	assert.Empty(t, run.Ending.PointOfNoReturn)

	// Fixed: the run begins again from the read-only mode, copies A again
	// (it took writes since), and finishes.
	failing = false
	f.nodes.calls, f.db.calls, f.lb.calls = nil, nil, nil
	res, err, _ = f.run(runner.Options{Preflight: true})
	require.NoError(t, err)
	assert.True(t, res.Resumed)
	assert.Equal(t, []string{"backup:/backups/a", "copy:b"}, f.db.Calls())
	assert.Contains(t, f.nodes.Calls(), "read_only:n2")
	assert.Equal(t, `step.start["n1"]`, res.PointOfNoReturn)
}

// sortedEnds sorts the first n calls and the last n (each made in
// parallel, or in the order their parallel steps ended) and keeps the
// rest in order.
func sortedEnds(calls []string, n int) []string {
	out := append([]string(nil), calls...)
	if len(out) < 2*n {
		return out
	}
	slices.Sort(out[:n])
	slices.Sort(out[len(out)-n:])
	return out
}

// After the point of no return nothing cluster-wide is undone: the run
// halts with n1 upgraded and serving, and says where each node stands and
// that read-only mode is still on the others.
func TestFailureAfterThePointOfNoReturnHaltsAndSaysWhereItemsStand(t *testing.T) {
	f := newFixture(t, shipped)
	failing := true
	f.nodes.InvokeFn = failExecOn("n2", &failing)
	res, err, _ := f.run(runner.Options{Preflight: true})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Nil(t, res.Returned)
	assert.Equal(t, `step.start["n1"]`, res.PointOfNoReturn)
	assert.NotContains(t, f.nodes.Calls(), "read_write:n2")
	assert.NotContains(t, f.db.Calls(), "drop")
	assert.Equal(t, []string{
		`n2: stopped in rollout "up" after 3 of 7 steps, at step.migrate["n2"] (failed); still in effect: read_only`,
		`n1: done (every step of rollout "up")`,
		`n3: not started in rollout "up"; still in effect on them: read_only`,
	}, res.Standing)
	run, err := f.j.Load()
	require.NoError(t, err)
	require.NotNil(t, run.Ending)
	assert.Equal(t, res.Standing, run.Ending.Standing, "status reads it from the journal")
	assert.Equal(t, `step.start["n1"]`, run.Ending.PointOfNoReturn)
}

// A stop (the operator's first Ctrl-C) before the point of no return
// releases what the run put on too: read-only is a lease, not a state the
// cluster is left in.
func TestStopBeforeThePointOfNoReturnReturnsToTheStart(t *testing.T) {
	f := newFixture(t, shipped)
	stop := make(chan struct{})
	f.db.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "backup" {
			close(stop)
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{Stop: stop})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Equal(t, journal.Stopped, res.Status)
	require.NotNil(t, res.Returned)
	assert.True(t, res.Returned.OK())
	calls := f.nodes.Calls()
	assert.ElementsMatch(t, []string{"read_only:n1", "read_only:n2", "read_only:n3", "read_write:n1", "read_write:n2", "read_write:n3"}, calls)
	assert.NotContains(t, f.db.Calls(), "copy:b", "nothing new starts after the stop")
}

// A preflight that finds a problem changes nothing: no step runs and no
// run is begun in the journal; every problem is in the error.
func TestPreflightProblemChangesNothing(t *testing.T) {
	f := newFixture(t, shipped)
	f.lb.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "preflight" {
			return cty.NilVal, errors.New("2 problem(s):\n  - server \"n4\" is not in the backend\n  - server \"n2\" is maint")
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{Preflight: true})
	var pe *runner.PreflightError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 1, pe.Report.Checked)
	assert.Contains(t, err.Error(), "preflight found problems in 1 of 1 checks; nothing was changed:")
	assert.Contains(t, err.Error(), `preflight.lb (load_balancer.front.preflight): 2 problem(s):`)
	assert.Contains(t, err.Error(), `server "n2" is maint`)
	assert.False(t, res.Preflight.OK())
	assert.Empty(t, f.nodes.Calls())
	assert.Empty(t, f.db.Calls())
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Nil(t, run, "no run begun")
}

// Past the point of no return, on_failure = "rollback" undoes the failed
// item only: the last node is put back on its old config and started,
// under the read-only mode the run had put it in (applied again before
// traffic comes back: a restarted old node is writable, and writes to the
// old database would be lost), then enabled. The rest stays.
func TestRollbackOfTheLastItemPutsItBackAsTheRunHadIt(t *testing.T) {
	f := newFixture(t, strings.Replace(shipped, "depends_on = [step.copy]", "depends_on = [step.copy]\n  on_failure = \"rollback\"", 1))
	failing := true
	f.nodes.InvokeFn = failExecOn("n3", &failing)
	res, err, _ := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	assert.Nil(t, res.Returned, "past the point of no return: no return to the start")
	calls := f.nodes.Calls()
	i := slices.Index(calls, "exec:n3")
	require.GreaterOrEqual(t, i, 0, calls)
	assert.Equal(t, []string{"exec:n3", "restore_config:n3", "start:n3", "read_only:n3"}, calls[i:])
	lb := f.lb.Calls()
	assert.Equal(t, []string{"drain:n3", "enable:n3"}, lb[len(lb)-2:], "enabled after read-only is back")
	assert.NotContains(t, f.db.Calls(), "drop")
	assert.NotContains(t, calls, "read_write:n1")
}

// The shipped playbook drains the first node while backup and copy run
// (they alone hold back its stop). A copy that fails then returns the
// cluster as any failure before the point of no return does: the drained
// node gets its traffic back, read-only is released, nothing was stopped.
func TestCopyFailingWhileTheFirstNodeDrainsReturnsItsTraffic(t *testing.T) {
	overlapped := strings.Replace(shipped, "  depends_on = [step.copy]\n  step \"drain\"", "  depends_on = [step.read_only]\n  step \"drain\"", 1)
	overlapped = strings.Replace(overlapped, "    run = node_pool.cluster.stop\n    with {\n      node = each.value.name\n    }\n",
		"    run = node_pool.cluster.stop\n    with {\n      node = each.value.name\n    }\n    depends_on = [step.copy]\n", 1)
	require.NotEqual(t, shipped, overlapped)
	require.Contains(t, overlapped, "depends_on = [step.copy]\n  }")
	f := newFixture(t, overlapped)
	drained := make(chan struct{})
	f.lb.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "drain" {
			close(drained)
		}
		return cty.NilVal, nil
	}
	f.db.InvokeFn = func(_ context.Context, action string, _ cty.Value) (cty.Value, error) {
		if action == "copy" {
			select { // the first node is out of rotation when the copy fails
			case <-drained:
			case <-time.After(10 * time.Second): // not overlapped: the assertions below say so
			}
			return cty.NilVal, errors.New("disk full")
		}
		return cty.NilVal, nil
	}
	res, err, _ := f.run(runner.Options{Preflight: true})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.NotNil(t, res.Returned)
	assert.True(t, res.Returned.OK(), res.Returned.Summary())
	assert.Equal(t, []string{"preflight", "drain:n1", "enable:n1"}, f.lb.Calls(), "the drained node is given its traffic back")
	for _, c := range f.nodes.Calls() {
		assert.False(t, strings.HasPrefix(c, "stop:"), "no node is stopped before backup and copy are done: %v", f.nodes.Calls())
	}
	assert.Contains(t, f.nodes.Calls(), "read_write:n1")
	run, err := f.j.Load()
	require.NoError(t, err)
	assert.Equal(t, journal.RolledBack, run.Steps[`step.drain["n1"]`].Status)
	assert.Equal(t, journal.Failed, run.Steps[`step.copy`].Status)
}
