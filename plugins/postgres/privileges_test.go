package main

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// TestDocumentedPrivilegesSuffice runs every action as the role
// docs/plugins/postgres.md asks for: not a superuser, CREATEDB, owner of A.
func TestDocumentedPrivilegesSuffice(t *testing.T) {
	a, _, admin := newA(t)
	ctx := context.Background()
	role := a + "_owner"
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN CREATEDB PASSWORD 'pw-" + role + "'",
		"ALTER DATABASE " + a + " OWNER TO " + role,
	} {
		_, err := admin.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+a+"_b WITH (FORCE)")
		_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	// The table was made by the superuser: give it to the owner of A too, as
	// an application's own tables are.
	c, err := pgx.Connect(ctx, dsnFor(t, a))
	require.NoError(t, err)
	_, err = c.Exec(ctx, "ALTER TABLE items OWNER TO "+role)
	require.NoError(t, err)
	closeAndWait(t, c)

	u, err := url.Parse(dsnFor(t, a))
	if err != nil || u.Scheme == "" {
		t.Skip("needs a URL DSN")
	}
	u.User = url.UserPassword(role, "pw-"+role)
	p, second := provider(t, u.String()), provider(t, u.String())

	for _, step := range []struct {
		action string
		args   map[string]cty.Value
	}{
		{"check", nil},
		{"backup", map[string]cty.Value{"to": cty.StringVal(filepath.Join(t.TempDir(), "a.dump"))}},
		{"lock", dbkittest.LockArgs("run 1 of alice@host", "")},
		{"read_only", map[string]cty.Value{"enabled": cty.True}},
		{"copy", dbkittest.CopyArgs(a+"_b", "r1", false)},
		{"copy", dbkittest.CopyArgs(a+"_b", "r2", true)},
		{"read_only", map[string]cty.Value{"enabled": cty.False}},
		{"drop", map[string]cty.Value{"name": cty.StringVal(a + "_b"), "run_id": cty.StringVal("r2")}},
	} {
		r := dbkittest.Invoke(p, step.action, step.args)
		require.False(t, r.Diagnostics.HasErrors(), "%s: %v", step.action, r.Diagnostics.Err())
		if step.action == "lock" {
			r = dbkittest.Invoke(second, "lock", dbkittest.LockArgs("run 2 of bob@host", ""))
			require.True(t, r.Diagnostics.HasErrors())
			assert.Contains(t, r.Diagnostics[0].Detail, "held by run 1 of alice@host (PostgreSQL backend pid ")
		}
	}
	r := dbkittest.Invoke(p, "unlock", nil)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("released").True())
}
