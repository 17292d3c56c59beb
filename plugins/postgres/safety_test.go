package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// pg_dump and pg_restore get the plugin's TLS settings (they dropped the
// DSN's sslmode and root certificate) and no secret of upshift's
// environment.
func TestClientEnvCarriesTLSAndNoSecret(t *testing.T) {
	t.Setenv("UPSHIFT_VAR_db_password", "from-env")
	for dsn, want := range map[string][]string{
		"postgres://u:pw@db:5432/a?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=/c.pem&sslkey=/k.pem": {
			"PGSSLMODE=verify-full", "PGSSLROOTCERT=/etc/ssl/ca.pem", "PGSSLCERT=/c.pem", "PGSSLKEY=/k.pem", "PGPASSWORD=pw"},
		"host=db user=u password=pw dbname=a sslmode=verify-ca sslrootcert='/etc/my ca.pem'": {
			"PGSSLMODE=verify-ca", "PGSSLROOTCERT=/etc/my ca.pem"},
		"postgres://u@db/a?sslmode=disable": {"PGSSLMODE=disable"},
	} {
		// (pgx reads the certificates when it parses: the connection
		// part is parsed alone here, the TLS part is read from dsn.)
		cfg, err := pgx.ParseConfig("postgres://u:pw@db:5432/a?sslmode=disable")
		require.NoError(t, err, dsn)
		env := (&pg{dsn: dsn, cfg: cfg}).clientEnv("b")
		for _, w := range want {
			assert.Contains(t, env, w, dsn)
		}
		assert.Contains(t, env, "PGDATABASE=b")
		assert.NotContains(t, strings.Join(env, "\n"), "from-env")
	}
}

// A backup holds every row of A: 0600 in a folder made 0700, against the
// real server.
func TestBackupIsPrivate(t *testing.T) {
	_, dsn, _ := newA(t)
	p := provider(t, dsn)
	to := filepath.Join(t.TempDir(), "dumps", "a.backup")
	r := invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(to)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	for p, want := range map[string]os.FileMode{to: 0o600, filepath.Dir(to): 0o700} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), p)
	}
}
