package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// files lists the folder's entries, to show preflight made none.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// walDB makes a WAL database A whose rows are all still in its -wal file:
// the connection that wrote them stays open (no checkpoint on close) until
// the test ends, as a running node's does.
func walDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=wal_autocheckpoint(0)")
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec("create table items(id integer primary key, v text)")
	require.NoError(t, err)
	_, err = db.Exec("insert into items(v) select printf('%0500d', value) from generate_series(1, 400)")
	if err != nil && strings.Contains(err.Error(), "generate_series") {
		for i := 0; i < 400; i++ {
			_, err = db.Exec("insert into items(v) values (printf('%0500d', ?))", i)
			require.NoError(t, err)
		}
	} else {
		require.NoError(t, err)
	}
	return path
}

func TestPreflightAgainstSQLite(t *testing.T) {
	a := walDB(t)
	p := configured(t, a)
	dir := filepath.Dir(a)
	b := filepath.Join(dir, "b.sqlite")

	// Nothing in the way: A's path and size, and nothing made. The size
	// covers what a backup of A takes, rows still in the -wal file
	// included.
	backups := t.TempDir()
	before := files(t, dir)
	r := invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", filepath.Join(backups, "new", "today")))
	require.NoError(t, r.Diagnostics.Err())
	assert.Equal(t, a, r.Result.GetAttr("name").AsString())
	size, _ := r.Result.GetAttr("size_bytes").AsBigFloat().Int64()
	assert.Equal(t, before, files(t, dir), "preflight made no file beside A")
	assert.NoDirExists(t, filepath.Join(backups, "new"), "nor the backup folder")
	bak := filepath.Join(backups, "a.bak")
	r = invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(bak)})
	require.NoError(t, r.Diagnostics.Err())
	backupBytes, _ := r.Result.GetAttr("bytes").AsBigFloat().Int64()
	assert.Greater(t, backupBytes, int64(200_000), "400 rows of 500 bytes")
	assert.GreaterOrEqual(t, size, backupBytes, "preflight's size is room enough for the backup")

	// B is this run's finished copy: fine. Another run's: a problem that
	// names it and the run.
	r = invoke(p, "copy", dbkittest.CopyArgs(b, "r1", false))
	require.NoError(t, r.Diagnostics.Err())
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", ""))
	require.NoError(t, r.Diagnostics.Err(), "this run's copy is fine")
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r2", ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - copy target: %s exists and is a finished copy made by run r1, not a finished copy of this run; drop it, or give copy replace = true if it may go", b), r.Diagnostics[0].Detail)

	// A file that is not a copy, and a backup folder under a file: both at
	// once. An unwritable folder too.
	other := filepath.Join(dir, "other.sqlite")
	require.NoError(t, os.WriteFile(other, []byte("precious"), 0o644))
	file := filepath.Join(t.TempDir(), "backups")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	r = invoke(p, "preflight", dbkittest.PreflightArgs(other, "r2", filepath.Join(file, "today")))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("2 problem(s):\n"+
		"  - copy target: %s exists and is not a copy made by upshift, not a finished copy of this run; drop it, or give copy replace = true if it may go\n"+
		"  - backup folder %s: %s is not a folder", other, filepath.Join(file, "today"), file), r.Diagnostics[0].Detail)
	locked := dbkittest.UnwritableDir(t)
	r = invoke(p, "preflight", dbkittest.PreflightArgs("", "", filepath.Join(locked, "today")))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - backup folder %s: %s cannot be written to: %s", filepath.Join(locked, "today"), locked, dbkittest.DeniedBecause()), r.Diagnostics[0].Detail)

	got, err := os.ReadFile(other)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(got), "preflight left the other file alone")
}

func TestPreflightSQLiteWithoutA(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.sqlite")
	p := configured(t, missing)
	r := invoke(p, "preflight", dbkittest.PreflightArgs("", "", t.TempDir()))
	require.True(t, r.Diagnostics.HasErrors())
	assert.True(t, strings.HasPrefix(r.Diagnostics[0].Detail, "the database does not answer: "), r.Diagnostics[0].Detail)
	assert.Contains(t, r.Diagnostics[0].Detail, missing)
	assert.NoFileExists(t, missing, "preflight does not create A")
}
