package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// schemas lists the databases named after a, to show preflight made none.
func schemas(t *testing.T, admin *sql.DB, a string) []string {
	t.Helper()
	rows, err := admin.Query("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ? ORDER BY schema_name", a+"%")
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestPreflightAgainstMariaDB(t *testing.T) {
	a, admin := newA(t)
	p := provider(t, serverDSN(t)+a)
	addr := serverAddr(t)
	b := a + "_b"

	// Nothing in the way: A's name and size (InnoDB's data and indexes),
	// and nothing made.
	backups := t.TempDir()
	r := invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", filepath.Join(backups, "new", "today")))
	require.NoError(t, r.Diagnostics.Err())
	assert.Equal(t, a, r.Result.GetAttr("name").AsString())
	size, _ := r.Result.GetAttr("size_bytes").AsBigFloat().Int64()
	assert.GreaterOrEqual(t, size, int64(16384), "at least one InnoDB page")
	assert.Equal(t, []string{a}, schemas(t, admin, a), "preflight made no database")
	assert.NoDirExists(t, filepath.Join(backups, "new"), "nor the backup folder")

	// B is this run's finished copy: fine. Another run's: a problem that
	// names it and the run.
	r = invoke(p, "copy", dbkittest.CopyArgs(b, "r1", false))
	require.NoError(t, r.Diagnostics.Err())
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", ""))
	require.NoError(t, r.Diagnostics.Err(), "this run's copy is fine")
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r2", ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - copy target: database %q on %s exists and is a finished copy made by run r1, not a finished copy of this run; drop it, or give copy replace = true if it may go", b, addr), r.Diagnostics[0].Detail)

	// A database that is not a copy, and a backup folder under a file:
	// both at once. An unwritable folder too.
	other := a + "_other"
	_, err := admin.Exec("CREATE DATABASE " + other)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "backups")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	r = invoke(p, "preflight", dbkittest.PreflightArgs(other, "r2", filepath.Join(file, "today")))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("2 problem(s):\n"+
		"  - copy target: database %q on %s exists and is not a copy made by upshift, not a finished copy of this run; drop it, or give copy replace = true if it may go\n"+
		"  - backup folder %s: %s is not a folder", other, addr, filepath.Join(file, "today"), file), r.Diagnostics[0].Detail)
	locked := dbkittest.UnwritableDir(t)
	r = invoke(p, "preflight", dbkittest.PreflightArgs("", "", locked))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - backup folder %s: %s cannot be written to: %s", locked, locked, dbkittest.DeniedBecause()), r.Diagnostics[0].Detail)

	assert.Equal(t, []string{a, b, other}, schemas(t, admin, a), "preflight made and dropped nothing")
}

func TestPreflightMariaDBWithoutA(t *testing.T) {
	p := provider(t, serverDSN(t)+"upshift_no_such_db")
	r := invoke(p, "preflight", dbkittest.PreflightArgs("upshift_no_such_db_b", "r1", t.TempDir()))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("the database does not answer: database %q on %s does not exist", "upshift_no_such_db", serverAddr(t)), r.Diagnostics[0].Detail)
}
