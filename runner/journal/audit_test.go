package journal

import (
	"testing"
	"time"

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
