package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileJournalRecordsAudit(t *testing.T) {
	j := mustOpen(t, t.TempDir())
	a := CurrentAudit("1.2.3")
	require.NotEmpty(t, a.Host)
	require.NotEmpty(t, a.User)
	j.SetAudit(a)
	require.NoError(t, j.Begin(&Run{ID: "r1", Steps: map[string]*Step{}}))
	require.NoError(t, j.Finish(Done))
	got, err := mustOpen(t, j.Path()).Load()
	require.NoError(t, err)
	require.Equal(t, a, got.Audit)
	// An archived run keeps it.
	require.NoError(t, j.Begin(&Run{ID: "r2", Steps: map[string]*Step{}}))
	hist, err := j.History()
	require.NoError(t, err)
	old, err := LoadFile(hist[0])
	require.NoError(t, err)
	require.Equal(t, "1.2.3", old.Audit.Version)
}

func TestWriteOutage(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	step := func(addr, action string, from, to float64) *Step {
		return &Step{Address: addr, Action: action, Status: Done, StartedAt: at(from), EndedAt: at(to)}
	}
	run := &Run{Steps: map[string]*Step{}}
	for _, s := range []*Step{
		step(`step.read_only["node-1"]`, "node_pool.cluster.read_only", 0, 0.5),
		step(`step.read_only["node-2"]`, "node_pool.cluster.read_only", 0, 1), // the last one opens it
		step("step.backup", "database.main.backup", 1, 3),
		step(`step.backup_data["node-1"]`, "node_pool.cluster.backup_data", 1, 3.5),
		step("step.copy", "database.main.copy", 1.2, 4),
		step(`step.drain["node-1"]`, "load_balancer.front.drain", 4, 5),
		step(`step.stop["node-1"]`, "node_pool.cluster.stop", 5, 5.5),
		step(`step.enable["node-1"]`, "load_balancer.front.enable", 8, 9), // closes it
		step(`step.stop["node-2"]`, "node_pool.cluster.stop", 10, 10.5),
		step(`step.enable["node-2"]`, "load_balancer.front.enable", 12, 13),
	} {
		run.Steps[s.Address] = s
	}
	o := run.WriteOutage()
	require.NotNil(t, o)
	require.Equal(t, at(1), o.From)
	require.Equal(t, at(9), o.To)
	require.Equal(t, 8*time.Second, o.Duration())
	require.Equal(t, "node-1", o.Item)
	require.Equal(t, []OutagePart{
		{Name: "backup", From: at(1), To: at(3.5)},
		{Name: "copy", From: at(1.2), To: at(4)},
		{Name: `first item's drain (node-1)`, From: at(4), To: at(5)},
		{Name: `first item's stop to enable (node-1)`, From: at(5), To: at(9)},
	}, o.Parts)

	// Not closed yet: the first enable has not finished.
	run.Steps[`step.enable["node-1"]`].Status = Running
	run.Steps[`step.enable["node-2"]`].Status = Pending
	o = run.WriteOutage()
	require.True(t, o.To.IsZero())
	require.Len(t, o.Parts, 2)

	// Never read-only: no window.
	delete(run.Steps, `step.read_only["node-1"]`)
	run.Steps[`step.read_only["node-2"]`].Status = Failed
	require.Nil(t, run.WriteOutage())
}

// returnedRun is the journal a run leaves when it fails before its point of
// no return and returns the cluster to where it began (runner/ponr.go):
// each undone step's record is its undo's, a backup's has no times.
func returnedRun(t0 time.Time) *Run {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	run := &Run{ID: "r-returned", Status: Failed, Steps: map[string]*Step{}}
	for _, s := range []*Step{
		{Address: `step.read_only["node-1"]`, Action: "node_pool.cluster.read_only", Status: RolledBack, Note: "undone by node_pool.cluster.read_write", StartedAt: at(9), EndedAt: at(9.5)},
		{Address: `step.read_only["node-2"]`, Action: "node_pool.cluster.read_only", Status: RolledBack, Note: "undone by node_pool.cluster.read_write", StartedAt: at(9.5), EndedAt: at(10)},
		{Address: "step.backup", Action: "database.main.backup", Status: RolledBack, Note: "returned to the start: nothing to undo; runs again"},
		{Address: "step.copy", Action: "database.main.copy", Status: RolledBack, Note: "undone by database.main.drop", StartedAt: at(7), EndedAt: at(8)},
		{Address: `step.migrate["node-1"]`, Action: "node_pool.cluster.exec", Status: Failed, Error: "exit 1", StartedAt: at(5), EndedAt: at(6)},
		{Address: `step.enable["node-1"]`, Action: "load_balancer.front.enable", Status: Pending},
	} {
		run.Steps[s.Address] = s
	}
	return run
}

func TestWriteOutageReturnedToStart(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	utc := func(t time.Time) string { return t.UTC().Format("15:04:05 MST") }
	o := returnedRun(t0).WriteOutage()
	require.NotNil(t, o, "a run that went read-only and undid it had a window")
	assert.Equal(t, OutageReturned, o.State())
	assert.True(t, o.From.IsZero(), "read_only's own end is replaced by its undo's record")
	assert.Equal(t, t0.Add(10*time.Second), o.Reopened, "the last undo of read_only")
	assert.Empty(t, o.Parts, "a rolled-back record holds its undo's times, not the step's")
	assert.Equal(t, "writes refused until 09:00:10 UTC, then taken again by the old version: the run returned the cluster to where it began before any node on the new version took writes (when read-only began is not kept in the journal once it is undone)", o.Line(utc))

	// The run's own stream knows when read-only began.
	o.From = t0.Add(2 * time.Second)
	assert.Equal(t, 8*time.Second, o.Duration())
	assert.Equal(t, "writes refused for 8s from 09:00:02 UTC, then taken again by the old version at 09:00:10 UTC: the run returned the cluster to where it began before any node on the new version took writes", o.Line(utc))
	b, err := json.Marshal(o)
	require.NoError(t, err)
	assert.JSONEq(t, `{"from":"2026-12-05T09:00:02Z","reopened":"2026-12-05T09:00:10Z","state":"returned","duration_ns":8000000000}`, string(b))

	// One node's undo failed: it is still read-only, the window still open.
	run := returnedRun(t0)
	run.Steps[`step.read_only["node-2"]`] = &Step{Address: `step.read_only["node-2"]`, Action: "node_pool.cluster.read_only", Status: Failed, Error: "its undo node_pool.cluster.read_write failed during rollback: refused; the step runs again on resume", StartedAt: at0(t0, 9.5), EndedAt: at0(t0, 10)}
	o = run.WriteOutage()
	assert.Equal(t, OutageOpen, o.State())
	assert.Equal(t, "writes may still be refused: the run began to undo read-only, returning the cluster to where it began, and that undo did not finish", o.Line(utc))

	// A node still read-only beside an undone one: open since it went so.
	run = returnedRun(t0)
	run.Steps[`step.read_only["node-2"]`] = &Step{Address: `step.read_only["node-2"]`, Action: "node_pool.cluster.read_only", Status: Done, StartedAt: at0(t0, 0.5), EndedAt: at0(t0, 1)}
	o = run.WriteOutage()
	assert.Equal(t, OutageOpen, o.State())
	assert.Equal(t, at0(t0, 1), o.From)
	assert.True(t, o.Reopened.IsZero())
	assert.Contains(t, o.Line(utc), "writes refused since 09:00:01 UTC, not reopened yet (")
}

func at0(t0 time.Time, s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestWriteOutageJSON(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	o := &Outage{From: t0, To: at0(t0, 6.5), Item: "node-1", Parts: []OutagePart{{Name: "backup", From: t0, To: at0(t0, 1.25)}}}
	b, err := json.Marshal(o)
	require.NoError(t, err)
	assert.JSONEq(t, `{"from":"2026-12-05T09:00:00Z","to":"2026-12-05T09:00:06.5Z","item":"node-1","state":"closed","duration_ns":6500000000,
		"parts":[{"name":"backup","from":"2026-12-05T09:00:00Z","to":"2026-12-05T09:00:01.25Z","duration_ns":1250000000}]}`, string(b))
	var back Outage
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, *o, back, "the added fields are computed: it reads back as it was")
	assert.Equal(t, "writes refused for 6.5s (backup 1.25s)", o.Line(nil))

	// An open window has no length in its JSON (it grows).
	o.To = time.Time{}
	b, err = json.Marshal(o)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "duration_ns\":6")
	assert.Contains(t, string(b), `"state":"open"`)
}

// closedRun is a done run whose window lasted total seconds, its backup
// and copy in parallel, the first item's stop to enable 2 s.
func closedRun(id string, t0 time.Time, backup, copy, total float64) *Run {
	run := &Run{ID: id, Status: Done, StartedAt: t0, Steps: map[string]*Step{}}
	for _, s := range []*Step{
		{Address: `step.read_only["node-1"]`, Action: "node_pool.cluster.read_only", StartedAt: t0, EndedAt: at0(t0, 1)},
		{Address: "step.backup", Action: "database.main.backup", StartedAt: at0(t0, 1), EndedAt: at0(t0, 1+backup)},
		{Address: "step.copy", Action: "database.main.copy", StartedAt: at0(t0, 1), EndedAt: at0(t0, 1+copy)},
		{Address: `step.stop["node-2"]`, Action: "node_pool.cluster.stop", StartedAt: at0(t0, total-1), EndedAt: at0(t0, total)},
		{Address: `step.enable["node-2"]`, Action: "load_balancer.front.enable", StartedAt: at0(t0, total), EndedAt: at0(t0, 1+total)},
	} {
		s.Status = Done
		run.Steps[s.Address] = s
	}
	return run
}

func TestEstimateOutage(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	require.Nil(t, EstimateOutage(nil), "no past run: no estimate")
	require.Nil(t, EstimateOutage([]*Run{returnedRun(t0)}), "a run that never closed its window says nothing of one")

	failed := closedRun("r-failed", t0, 1, 1, 100)
	failed.Status = Failed
	runs := []*Run{ // newest first
		returnedRun(t0),
		closedRun("r4", t0, 10, 20, 30), // window 30 s: read_only ends at 1, enable at 31
		failed,                          // not done: left out, however long
		closedRun("r3", t0, 12, 18, 40),
		closedRun("r2", t0, 8, 30, 35),
	}
	e := EstimateOutage(runs)
	require.NotNil(t, e)
	assert.Equal(t, []string{"r4", "r3", "r2"}, e.Runs)
	assert.Equal(t, 35*time.Second, e.Duration, "the median of 30, 40 and 35 s")
	assert.Equal(t, []EstimatePart{
		{Name: "backup", Duration: 10 * time.Second},
		{Name: "copy", Duration: 20 * time.Second, Parallel: true},
		{Name: "first item's stop to enable", Duration: 2 * time.Second},
	}, e.Parts)
	assert.Equal(t, "about 35s (backup 10s, copy 20s in parallel, first item's stop to enable 2s), from the last 3 runs of this cluster", e.Text())

	// At most EstimateRuns windows, the newest; an even count's median is
	// the mean of the middle two.
	var many []*Run
	for i := range 8 {
		many = append(many, closedRun(fmt.Sprint("m", i), t0, 1, 1, float64(60+10*i)))
	}
	e = EstimateOutage(many)
	assert.Len(t, e.Runs, EstimateRuns)
	assert.Equal(t, 80*time.Second, e.Duration)
	assert.Equal(t, "about 1m20s (backup 1s, copy 1s in parallel, first item's stop to enable 2s), from the last 5 runs of this cluster", e.Text())
	assert.Equal(t, "about 30ms, from the last run of this cluster", (&OutageEstimate{Duration: 28 * time.Millisecond, Runs: []string{"r"}}).Text(), "a local window of milliseconds is not 0s")
	e = EstimateOutage(many[:2])
	assert.Equal(t, 65*time.Second, e.Duration)
	assert.Equal(t, "about 1m5s (backup 1s, copy 1s in parallel, first item's stop to enable 2s), from the last 2 runs of this cluster", e.Text())
}

// TestRecentRunsReadsOnlyItsCluster: the runs an estimate reads are the
// cluster's own, from real journal files, newest first; a state folder
// that does not exist is not made.
func TestRecentRunsReadsOnlyItsCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	mine := &Cluster{ID: "aaaaaaaaaaaa1111"}
	other := &Cluster{ID: "bbbbbbbbbbbb2222"}
	runs, err := RecentRuns(dir, mine)
	require.NoError(t, err)
	require.Empty(t, runs)
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "reading makes no state folder")

	store, err := OpenStore(dir)
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	write := func(c *Cluster, ids ...string) {
		cdir, err := store.Register(c)
		require.NoError(t, err)
		j := mustOpen(t, cdir)
		for i, id := range ids {
			journalRun(t, j, closedRun(id, t0.Add(time.Duration(i)*time.Hour), 1, 2, 10))
		}
		require.NoError(t, j.Close())
	}
	write(mine, "m1", "m2", "m3")
	write(other, "o1", "o2")
	runs, err = RecentRuns(dir, mine)
	require.NoError(t, err)
	assert.Equal(t, []string{"m3", "m2", "m1"}, runIDs(runs))
	e := EstimateOutage(runs)
	require.NotNil(t, e)
	assert.Equal(t, []string{"m3", "m2", "m1"}, e.Runs)
	assert.Equal(t, 10*time.Second, e.Duration)

	// Another cluster under the same short id is not this one.
	twin := &Cluster{ID: mine.ID[:12] + "9999"}
	runs, err = RecentRuns(dir, twin)
	require.NoError(t, err)
	assert.Empty(t, runs)
}

// TestPGRecentRunsReadsOnlyItsCluster is TestRecentRunsReadsOnlyItsCluster
// with the state in a real PostgreSQL: another cluster's runs in the same
// database are not read.
func TestPGRecentRunsReadsOnlyItsCluster(t *testing.T) {
	s := openTestPG(t, newPGDB(t, pgAdminDSN(t)), testKey(t))
	ctx := context.Background()
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	write := func(c *Cluster, total float64, ids ...string) {
		require.NoError(t, s.Register(ctx, c))
		j := s.Journal(c)
		for i, id := range ids {
			journalRun(t, j, closedRun(id, t0.Add(time.Duration(i)*time.Hour), 1, 2, total))
		}
	}
	mine, other := pgCluster("aa11bb22cc33dd44"), pgCluster("ff11bb22cc33dd44")
	write(mine, 10, "m1", "m2", "m3")
	write(other, 600, "o1", "o2")
	runs, err := s.RecentRuns(ctx, mine)
	require.NoError(t, err)
	assert.Equal(t, []string{"m3", "m2", "m1"}, runIDs(runs))
	e := EstimateOutage(runs)
	require.NotNil(t, e)
	assert.Equal(t, 10*time.Second, e.Duration)
	none, err := s.RecentRuns(ctx, pgCluster("0011bb22cc33dd44"))
	require.NoError(t, err)
	assert.Empty(t, none)
}

// journalRun writes r through j as a run would: begun, each of its steps
// recorded, finished done.
func journalRun(t *testing.T, j *Journal, r *Run) {
	t.Helper()
	steps := r.Steps
	r.Steps, r.Status = nil, Running
	require.NoError(t, j.Begin(r))
	for _, s := range steps {
		require.NoError(t, j.Update(*s))
	}
	require.NoError(t, j.Finish(Done))
}

func runIDs(runs []*Run) []string {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}
