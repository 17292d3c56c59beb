package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

func TestLockIsOneRunPerDatabase(t *testing.T) {
	a, _ := newDB(t)
	dbkittest.Lock(t, configured(t, a), configured(t, a), a+".upshift-lock", "fuser -v "+a+".upshift-lock")

	p := configured(t, a)
	r := dbkittest.Invoke(p, "lock", dbkittest.LockArgs("run a of alice@host", ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	body, err := os.ReadFile(a + ".upshift-lock")
	require.NoError(t, err)
	assert.Contains(t, string(body), "run a of alice@host\nsince ")

	// The same A through a symbolic link: the same lock.
	link := filepath.Join(t.TempDir(), "a-link.sqlite")
	require.NoError(t, os.Symlink(a, link))
	r = dbkittest.Invoke(configured(t, link), "lock", dbkittest.LockArgs("run c", ""))
	require.True(t, r.Diagnostics.HasErrors(), "A reached through a link is locked too")
	assert.Contains(t, r.Diagnostics[0].Detail, "is held by run a of alice@host")

	// A missing database is an error, not a lock file beside nothing.
	missing := filepath.Join(t.TempDir(), "nope.sqlite")
	r = dbkittest.Invoke(configured(t, missing), "lock", dbkittest.LockArgs("run b", ""))
	require.True(t, r.Diagnostics.HasErrors())
	_, err = os.Stat(missing + ".upshift-lock")
	assert.True(t, os.IsNotExist(err))
}

func TestLockFreedWhenPluginProcessDies(t *testing.T) {
	a, _ := newDB(t)
	dying, kill := dbkittest.Binary(t, "github.com/upshift-dev/upshift/plugins/sqlite", "sqlite",
		cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(a)}))
	took := dbkittest.LockFreedWhenPluginDies(t, dying, kill, configured(t, a))
	t.Logf("lock free %s after the plugin's SIGKILL", took)
}

func TestCopyAdoptsOnlyItsOwnRun(t *testing.T) {
	a, _ := newDB(t)
	p := configured(t, a)
	dir := filepath.Dir(a)
	// A keeps being written: compare with a snapshot of its own instead.
	nonEmpty := func(dsn string) int {
		if rows(t, dsn) > 0 {
			return 1
		}
		return 0
	}
	dbkittest.CopyAdoptsOnlyItsRun(t, p, filepath.Join(dir, "b.sqlite"), nonEmpty, 1)

	other := filepath.Join(dir, "other.sqlite")
	require.NoError(t, os.WriteFile(other, []byte("precious"), 0o644))
	for _, mark := range []string{
		a + "\n",                           // naming no run
		a + "\nrun_id r0\n",                // another run's
		"/elsewhere/a.sqlite\nrun_id r1\n", // a copy of another A
		a + "\nrun_id r1\nmore\n",          // not a marker of ours
	} {
		require.NoError(t, os.WriteFile(other+".upshift-copy", []byte(mark), 0o644))
		dbkittest.PlantedMarkerRefused(t, p, other, "r1")
	}
	got, _ := os.ReadFile(other)
	assert.Equal(t, "precious", string(got))

	// A copy a crash interrupted: made again by its run only.
	require.NoError(t, os.WriteFile(other+".upshift-copy", []byte(a+"\nrun_id r1\nunfinished\n"), 0o644))
	dbkittest.UnfinishedCopyMadeAgain(t, p, other, "r1", nonEmpty, 1)
	mark, _ := os.ReadFile(other + ".upshift-copy")
	assert.Equal(t, a+"\nrun_id r1\n", string(mark))
}
