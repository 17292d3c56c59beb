package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// databases lists the databases named after a, to show preflight made none.
func databases(t *testing.T, admin *pgx.Conn, a string) []string {
	t.Helper()
	rows, err := admin.Query(context.Background(), "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname", a+"%")
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestPreflightAgainstPostgres(t *testing.T) {
	a, dsn, admin := newA(t)
	p := provider(t, dsn)
	host, port, _ := serverAt(t)
	b := a + "_b"

	// Nothing in the way: A's name and its size, and nothing made.
	backups := t.TempDir()
	r := invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", filepath.Join(backups, "new", "today")))
	require.NoError(t, r.Diagnostics.Err())
	assert.Equal(t, a, r.Result.GetAttr("name").AsString())
	size, _ := r.Result.GetAttr("size_bytes").AsBigFloat().Int64()
	assert.Greater(t, size, int64(100_000), "A with its 500 rows, as pg_database_size says")
	assert.Equal(t, []string{a}, databases(t, admin, a), "preflight made no database")
	assert.NoDirExists(t, filepath.Join(backups, "new"), "nor the backup folder")

	// B is this run's finished copy: fine. Another run's: a problem that
	// names it and the run.
	r = invoke(p, "copy", dbkittest.CopyArgs(b, "r1", false))
	require.NoError(t, r.Diagnostics.Err())
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r1", ""))
	require.NoError(t, r.Diagnostics.Err(), "this run's copy is fine")
	r = invoke(p, "preflight", dbkittest.PreflightArgs(b, "r2", ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - copy target: database %q on %s:%d exists and is a finished copy made by run r1, not a finished copy of this run; drop it, or give copy replace = true if it may go", b, host, port), r.Diagnostics[0].Detail)

	// A database that is not a copy at all, and a backup folder that is a
	// file and one that cannot be written to: every problem at once.
	other := a + "_other"
	_, err := admin.Exec(context.Background(), "CREATE DATABASE "+other)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "backups")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	r = invoke(p, "preflight", dbkittest.PreflightArgs(other, "r2", filepath.Join(file, "today")))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("2 problem(s):\n"+
		"  - copy target: database %q on %s:%d exists and is not a copy made by upshift, not a finished copy of this run; drop it, or give copy replace = true if it may go\n"+
		"  - backup folder %s: %s is not a folder", other, host, port, filepath.Join(file, "today"), file), r.Diagnostics[0].Detail)
	r = invoke(p, "preflight", dbkittest.PreflightArgs("", "", file))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - backup folder %s: %s is not a folder", file, file), r.Diagnostics[0].Detail)

	locked := dbkittest.UnwritableDir(t)
	r = invoke(p, "preflight", dbkittest.PreflightArgs("", "", filepath.Join(locked, "sub", "dir")))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, fmt.Sprintf("1 problem(s):\n  - backup folder %s: %s cannot be written to: %s", filepath.Join(locked, "sub", "dir"), locked, dbkittest.DeniedBecause()), r.Diagnostics[0].Detail)

	assert.Equal(t, []string{a, b, other}, databases(t, admin, a), "preflight made and dropped nothing")
	r = invoke(p, "preflight", dbkittest.PreflightArgs("", "", ""))
	require.NoError(t, r.Diagnostics.Err(), "no to, no backup_dir: only A is checked")
}

// TestPreflightPostgresPrivileges: a role that may not create databases
// and does not own A is told both, with the statements that fix them; run
// as they are given, they do (for a role whose name needs quoting too).
func TestPreflightPostgresPrivileges(t *testing.T) {
	for _, role := range []string{"weak", "Weak-Role"} {
		t.Run(role, func(t *testing.T) {
			a, _, admin := newA(t)
			ctx := context.Background()
			_, _, super := serverAt(t)
			role := role + strings.TrimPrefix(a, "upshift_test")
			_, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD 'pw'")
			require.NoError(t, err)
			t.Cleanup(func() {
				_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+a+" WITH (FORCE)")
				_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
				_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
			})
			u, err := url.Parse(dsnFor(t, a))
			if err != nil || u.Scheme == "" {
				t.Skip("needs a URL DSN")
			}
			u.User = url.UserPassword(role, "pw")
			p := provider(t, u.String())
			host, port, _ := serverAt(t)

			quoted := role
			if role != strings.ToLower(role) || strings.Contains(role, "-") {
				quoted = `"` + role + `"`
			}
			r := invoke(p, "preflight", dbkittest.PreflightArgs(a+"_b", "r1", t.TempDir()))
			require.True(t, r.Diagnostics.HasErrors())
			detail := r.Diagnostics[0].Detail
			assert.Equal(t, fmt.Sprintf("2 problem(s):\n"+
				"  - role %q may not create databases, which copy does: ALTER ROLE %s CREATEDB\n"+
				"  - role %q does not own database %q on %s:%d (%q does), so copy cannot use it as a template nor dump every table: ALTER DATABASE %s OWNER TO %s",
				role, quoted, role, a, host, port, super, a, quoted), detail)

			// Each problem's statement, run as given, fixes it.
			for _, line := range strings.Split(detail, "\n")[1:] {
				stmt := line[strings.LastIndex(line, ": ")+2:]
				_, err := admin.Exec(ctx, stmt)
				require.NoError(t, err, stmt)
			}
			r = invoke(p, "preflight", dbkittest.PreflightArgs(a+"_b", "r1", t.TempDir()))
			require.NoError(t, r.Diagnostics.Err())
			assert.Equal(t, a, r.Result.GetAttr("name").AsString())
			size, _ := r.Result.GetAttr("size_bytes").AsBigFloat().Int64()
			assert.Greater(t, size, int64(0))
		})
	}
}
