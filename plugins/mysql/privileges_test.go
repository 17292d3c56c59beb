package main

import (
	"context"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// documentedGrants are the privileges docs/plugins/mysql.md lists for
// backup, copy, drop and lock (read_only is refused; check needs any).
const documentedGrants = "SELECT, SHOW VIEW, TRIGGER, EVENT, CREATE, DROP, ALTER, INDEX, INSERT, UPDATE, DELETE, REFERENCES, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, LOCK TABLES, PROCESS"

// TestDocumentedPrivilegesSuffice runs every action as a user with only
// the documented privileges, on an A with a view, a routine and a trigger.
func TestDocumentedPrivilegesSuffice(t *testing.T) {
	a, admin := newA(t)
	user := strings.Replace(a, "upshift_test_", "u", 1)
	for _, q := range []string{
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'pw-" + user + "'",
		"GRANT " + documentedGrants + " ON *.* TO '" + user + "'@'%'",
	} {
		_, err := admin.Exec(q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	cfg, err := mysql.ParseDSN(serverDSN(t))
	require.NoError(t, err)
	cfg.User, cfg.Passwd, cfg.DBName = user, "pw-"+user, a

	// Definers other than the user need SET USER to restore: these are the
	// user's own. Created in A (unqualified), as an application does.
	conn, err := admin.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	for _, q := range []string{
		"USE " + a,
		"CREATE DEFINER = '" + user + "'@'%' VIEW v AS SELECT id FROM items",
		"CREATE DEFINER = '" + user + "'@'%' PROCEDURE p() SELECT 1",
		"CREATE DEFINER = '" + user + "'@'%' TRIGGER t BEFORE INSERT ON items FOR EACH ROW SET NEW.v = NEW.v",
	} {
		_, err := conn.ExecContext(context.Background(), q)
		require.NoError(t, err, q)
	}
	p := provider(t, cfg.FormatDSN())
	as := provider(t, cfg.FormatDSN()) // the same user, as a second run would

	r := dbkittest.Invoke(p, "check", nil)
	require.False(t, r.Diagnostics.HasErrors(), "check: %v", r.Diagnostics.Err())
	r = dbkittest.Invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(t.TempDir() + "/a.sql")})
	require.False(t, r.Diagnostics.HasErrors(), "backup: %v", r.Diagnostics.Err())
	r = dbkittest.Invoke(p, "lock", dbkittest.LockArgs("run 1 of alice@host", ""))
	require.False(t, r.Diagnostics.HasErrors(), "lock: %v", r.Diagnostics.Err())
	r = dbkittest.Invoke(as, "lock", dbkittest.LockArgs("run 2 of bob@host", ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics[0].Detail, "held by run 1 of alice@host (connection ")
	r = dbkittest.Invoke(p, "copy", dbkittest.CopyArgs(a+"_b", "r1", false))
	require.False(t, r.Diagnostics.HasErrors(), "copy: %v", r.Diagnostics.Err())
	var n int
	require.NoError(t, admin.QueryRow("SELECT count(*) FROM information_schema.routines WHERE routine_schema = ?", a+"_b").Scan(&n))
	assert.Equal(t, 1, n, "the routine was copied")
	r = dbkittest.Invoke(p, "copy", dbkittest.CopyArgs(a+"_b", "r2", true))
	require.False(t, r.Diagnostics.HasErrors(), "copy with replace: %v", r.Diagnostics.Err())
	r = dbkittest.Invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a + "_b"), "run_id": cty.StringVal("r2")})
	require.False(t, r.Diagnostics.HasErrors(), "drop: %v", r.Diagnostics.Err())
	r = dbkittest.Invoke(p, "unlock", nil)
	require.False(t, r.Diagnostics.HasErrors(), "unlock: %v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("released").True())
}
