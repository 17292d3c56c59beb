package main

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

func TestLockIsOneRunPerDatabase(t *testing.T) {
	a, admin := newA(t)
	dsn := serverDSN(t) + a
	dbkittest.Lock(t, provider(t, dsn), provider(t, dsn), "connection ", "KILL ")

	// The holder row stays out of dumps, so out of B.
	p := provider(t, dsn)
	r := dbkittest.Invoke(p, "lock", dbkittest.LockArgs("run a", ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	var n int
	require.NoError(t, admin.QueryRow("SELECT count(*) FROM "+a+"."+lockTable).Scan(&n))
	require.Equal(t, 1, n, "the holder is written beside the lock")
	r = dbkittest.Invoke(p, "copy", dbkittest.CopyArgs(a+"_b", "r1", false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	require.NoError(t, admin.QueryRow("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", a+"_b", lockTable).Scan(&n))
	require.Equal(t, 0, n, "no lock table in the copy")

	// Another database on the same server has its own lock.
	other, _ := newA(t)
	r = dbkittest.Invoke(provider(t, serverDSN(t)+other), "lock", dbkittest.LockArgs("run b", ""))
	require.False(t, r.Diagnostics.HasErrors(), "another database, another lock: %v", r.Diagnostics.Err())
}

func TestLockFreedWhenPluginProcessDies(t *testing.T) {
	a, _ := newA(t)
	dsn := serverDSN(t) + a
	dying, kill := dbkittest.Binary(t, "github.com/upshift-dev/upshift/plugins/mysql", "mysql",
		cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal(dsn), "timeout": cty.StringVal("10s")}))
	took := dbkittest.LockFreedWhenPluginDies(t, dying, kill, provider(t, dsn))
	t.Logf("lock free %s after the plugin's SIGKILL", took)
}

func TestCopyAdoptsOnlyItsOwnRun(t *testing.T) {
	a, admin := newA(t)
	p := provider(t, serverDSN(t)+a)
	rows := func(dsn string) int {
		db, err := sql.Open("mysql", dsn)
		require.NoError(t, err)
		defer db.Close()
		var n int
		require.NoError(t, db.QueryRow("SELECT count(*) FROM items").Scan(&n))
		return n
	}
	dbkittest.CopyAdoptsOnlyItsRun(t, p, a+"_b", rows, 300)

	other := a + "_other"
	plant := func(stmts ...string) {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + other)
		for _, q := range append([]string{"CREATE DATABASE " + other}, stmts...) {
			_, err := admin.Exec(q)
			require.NoError(t, err, q)
		}
	}
	marker := other + "." + markerTable
	plant("CREATE TABLE "+marker+" (source VARCHAR(64) NOT NULL)", "INSERT INTO "+marker+" VALUES ('"+a+"')") // before run ids
	dbkittest.PlantedMarkerRefused(t, p, other, "r1")
	const table = " (source VARCHAR(64) NOT NULL, run_id VARCHAR(128) NULL, finished BOOLEAN NOT NULL)"
	plant("CREATE TABLE "+marker+table, "INSERT INTO "+marker+" VALUES ('"+a+"', 'r0', TRUE)")
	dbkittest.PlantedMarkerRefused(t, p, other, "r1")
	plant("CREATE TABLE "+marker+table, "INSERT INTO "+marker+" VALUES ('"+a+"', 'r1', TRUE), ('"+a+"', 'r0', TRUE)")
	dbkittest.PlantedMarkerRefused(t, p, other, "r1") // two rows: no marker of ours

	// A copy a crash interrupted: made again by its run only.
	plant("CREATE TABLE "+marker+table, "INSERT INTO "+marker+" VALUES ('"+a+"', 'r1', FALSE)")
	dbkittest.UnfinishedCopyMadeAgain(t, p, other, "r1", rows, 300)
}

// The next upgrade copies B, which carries the marker of its own copy: the
// copy of B gets a marker of its own, not B's.
func TestCopyOfACopy(t *testing.T) {
	a, admin := newA(t)
	b, c := a+"_b", a+"_other"
	r := dbkittest.Invoke(provider(t, serverDSN(t)+a), "copy", dbkittest.CopyArgs(b, "r1", false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	r = dbkittest.Invoke(provider(t, serverDSN(t)+b), "copy", dbkittest.CopyArgs(c, "r2", false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	var src, run string
	require.NoError(t, admin.QueryRow("SELECT source, run_id FROM "+c+"."+markerTable).Scan(&src, &run))
	require.Equal(t, []string{b, "r2"}, []string{src, run})
}
