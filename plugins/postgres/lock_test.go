package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

func TestLockIsOneRunPerDatabase(t *testing.T) {
	_, dsn, _ := newA(t)
	dbkittest.Lock(t, provider(t, dsn), provider(t, dsn), "PostgreSQL backend pid", "pg_terminate_backend(")

	// Another database on the same server has its own lock.
	_, other, _ := newA(t)
	p, q := provider(t, dsn), provider(t, other)
	r := dbkittest.Invoke(p, "lock", dbkittest.LockArgs("run a", ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	r = dbkittest.Invoke(q, "lock", dbkittest.LockArgs("run b", ""))
	require.False(t, r.Diagnostics.HasErrors(), "another database, another lock: %v", r.Diagnostics.Err())
}

func TestLockFreedWhenPluginProcessDies(t *testing.T) {
	_, dsn, _ := newA(t)
	dying, kill := dbkittest.Binary(t, "github.com/upshift-dev/upshift/plugins/postgres", "postgres",
		cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal(dsn), "timeout": cty.StringVal("10s")}))
	took := dbkittest.LockFreedWhenPluginDies(t, dying, kill, provider(t, dsn))
	t.Logf("lock free %s after the plugin's SIGKILL", took)
}

func TestCopyAdoptsOnlyItsOwnRun(t *testing.T) {
	a, dsn, admin := newA(t)
	p := provider(t, dsn)
	dbkittest.CopyAdoptsOnlyItsRun(t, p, a+"_b", func(dsn string) int { return count(t, dsn) }, 500)

	ctx := context.Background()
	other := a + "_other"
	_, err := admin.Exec(ctx, "CREATE DATABASE "+other)
	require.NoError(t, err)
	for _, comment := range []string{
		"upshift copy of " + a,                             // a marker naming no run
		"upshift copy of " + a + " by run 20261205T0000Z",  // another run's
		"upshift copy of upshift_test_elsewhere by run r1", // a copy of another A
	} {
		_, err = admin.Exec(ctx, "COMMENT ON DATABASE "+other+" IS "+quote(comment))
		require.NoError(t, err)
		dbkittest.PlantedMarkerRefused(t, p, other, "r1")
	}

	// A copy a crash interrupted: made again by its run only.
	_, err = admin.Exec(ctx, "COMMENT ON DATABASE "+other+" IS "+quote("upshift unfinished copy of "+a+" by run r1"))
	require.NoError(t, err)
	dbkittest.UnfinishedCopyMadeAgain(t, p, other, "r1", func(dsn string) int { return count(t, dsn) }, 500)

	// The right marker on a database another role owns: neither adopted
	// nor replaced, nor dropped.
	role := a + "_role"
	_, err = admin.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)")
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	_, err = admin.Exec(ctx, "ALTER DATABASE "+other+" OWNER TO "+role)
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "COMMENT ON DATABASE "+other+" IS "+quote("upshift copy of "+a+" by run r1"))
	require.NoError(t, err)
	for _, replace := range []bool{false, true} {
		r := dbkittest.Invoke(p, "copy", dbkittest.CopyArgs(other, "r1", replace))
		require.True(t, r.Diagnostics.HasErrors(), "owned by another role (replace = %t)", replace)
		require.Contains(t, r.Diagnostics[0].Detail, `is owned by role "`+role+`"`)
	}
	r := dbkittest.Invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(other), "run_id": cty.StringVal("r1")})
	require.True(t, r.Diagnostics.HasErrors())
	var n int
	require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", other).Scan(&n))
	require.Equal(t, 1, n, "still there")
}
