package journal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMigrateBothWaysLosesNothing moves a cluster's state (an unfinished
// run with a sealed result, samples and an ending; two past runs) from a
// state folder into PostgreSQL and back into another folder, and compares
// every run with the original after each move.
func TestMigrateBothWaysLosesNothing(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	ctx := context.Background()
	pg := openTestPG(t, dsn, testKey(t))

	src, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	c := pgCluster("abcdef0123456789")
	dir, err := src.Register(c)
	require.NoError(t, err)
	j, err := Open(dir)
	require.NoError(t, err)
	j.SetAudit(&Audit{User: "ops", Host: "ci-7", Version: "1.4.0", Command: "upshift run p"})
	for i, status := range []Status{Done, Failed} {
		id := []string{"r1", "r2"}[i]
		require.NoError(t, j.Begin(&Run{ID: id, Cluster: c.ID, Digest: "sha256:" + id, StartedAt: time.Date(2026, 12, 1+i, 9, 0, 0, 0, time.UTC), Steps: map[string]*Step{}}))
		require.NoError(t, j.Update(secretStep(i)))
		require.NoError(t, j.Finish(status))
	}
	require.NoError(t, j.Begin(&Run{ID: "r3", Cluster: c.ID, Digest: "sha256:r3", Steps: map[string]*Step{"step.b": {Address: "step.b", Status: Pending}}}))
	require.NoError(t, j.Update(secretStep(3)))
	require.NoError(t, j.RecordSample(Sample{Rollout: "upgrade", At: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC), Backend: &Counters{Requests: 7, HTTP5xx: 1}}))
	require.NoError(t, j.FinishWith(Paused, &Ending{Returned: "node-1 back on X"}))
	require.NoError(t, j.Close())

	wantCur, err := Open(dir)
	require.NoError(t, err)
	cur, err := wantCur.Load()
	require.NoError(t, err)
	require.NotNil(t, cur.Steps[secretStep(3).Address].ResultWire)
	past := loadHistory(t, dir)
	require.Len(t, past, 2)

	moved, err := MigrateToPG(ctx, src, pg, "")
	require.NoError(t, err)
	require.Len(t, moved, 1)
	require.Equal(t, "r3", moved[0].Current)
	require.Equal(t, 2, moved[0].Past)
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist, "the folder must be moved aside, so that no local run resumes it")
	_, err = os.Stat(filepath.Join(moved[0].Aside, snapshotName))
	require.NoError(t, err)

	got, err := pg.Journal(c).Load()
	require.NoError(t, err)
	requireSameRun(t, cur, got)
	all, err := pg.Clusters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, c, all[0].Cluster)
	require.Len(t, all[0].Past, 2)
	for i := range past {
		requireSameRun(t, past[i], all[0].Past[i])
	}

	// A folder that already holds a run of the cluster is refused, and
	// PostgreSQL keeps everything.
	busy, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	bdir, err := busy.Register(c)
	require.NoError(t, err)
	bj, err := Open(bdir)
	require.NoError(t, err)
	require.NoError(t, bj.Begin(&Run{ID: "other", Steps: map[string]*Step{}}))
	_, err = MigrateToLocal(ctx, pg, busy, "")
	require.ErrorContains(t, err, "already holds runs of this cluster")
	got, err = pg.Journal(c).Load()
	require.NoError(t, err)
	requireSameRun(t, cur, got)

	dst, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	moved, err = MigrateToLocal(ctx, pg, dst, "")
	require.NoError(t, err)
	require.Len(t, moved, 1)
	back, err := dst.Clusters()
	require.NoError(t, err)
	require.Len(t, back, 1)
	j2, err := Open(back[0].Dir)
	require.NoError(t, err)
	got, err = j2.Load()
	require.NoError(t, err)
	requireSameRun(t, cur, got)
	backPast := loadHistory(t, back[0].Dir)
	require.Len(t, backPast, 2)
	for i := range past {
		requireSameRun(t, past[i], backPast[i])
	}
	// PostgreSQL no longer holds it.
	all, err = pg.Clusters(ctx)
	require.NoError(t, err)
	require.Empty(t, all)
	// A resumed run goes on in its new home.
	require.NoError(t, j2.Update(Step{Address: "step.b", Status: Done}))
}

func loadHistory(t *testing.T, dir string) []*Run {
	t.Helper()
	j := &Journal{dir: dir}
	paths, err := j.History()
	require.NoError(t, err)
	var out []*Run
	for _, p := range paths {
		r, err := LoadFile(p)
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

// requireSameRun compares two runs as read from two backends: equal in
// every field, times compared as instants (PostgreSQL keeps microseconds
// in its columns, the header keeps them all).
func requireSameRun(t *testing.T, want, got *Run) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, want.ID, got.ID)
	require.True(t, want.StartedAt.Equal(got.StartedAt), "started_at")
	require.True(t, want.UpdatedAt.Equal(got.UpdatedAt), "updated_at")
	w, g := *want, *got
	w.StartedAt, w.UpdatedAt, g.StartedAt, g.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, w, g)
}
