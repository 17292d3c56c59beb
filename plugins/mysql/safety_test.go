package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
)

// A password that ends its line in the option file would add options of
// its own (here, another host): it is quoted and escaped, and a user with
// such a password backs up through it, against the real server.
func TestOptionFileTakesAnyPassword(t *testing.T) {
	a, admin := newA(t)
	user := strings.Replace(a, "upshift_test_", "q", 1)
	// The file an injected option would make: the test's own, so that a
	// run of an older (injectable) upshift leaves nothing that fails this
	// one.
	owned := filepath.Join(t.TempDir(), "owned")
	pw := "p#w;'\"\\x\nhost=203.0.113.1\n[mysqldump]\nresult-file=" + owned + " "
	lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
	_, err := admin.Exec("CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + lit + "'")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	_, err = admin.Exec("GRANT ALL ON *.* TO '" + user + "'@'%'")
	require.NoError(t, err)
	cfg, err := mysql.ParseDSN(serverDSN(t))
	require.NoError(t, err)
	cfg.User, cfg.Passwd, cfg.DBName = user, pw, a

	d := &my{cfg: cfg}
	cnf, err := d.defaultsFile(t.TempDir())
	require.NoError(t, err)
	b, err := os.ReadFile(cnf)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	assert.Equal(t, "[client]", lines[0])
	for _, l := range lines[1:] {
		assert.Regexp(t, `^[a-z-]+=`, l, "one option per line: %q", l)
	}
	assert.NotContains(t, string(b), "\nhost=203.0.113.1")

	p := provider(t, cfg.FormatDSN())
	to := filepath.Join(t.TempDir(), "dumps", "a.sql")
	r := dbkittest.Invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(to)})
	require.False(t, r.Diagnostics.HasErrors(), "backup: %v", r.Diagnostics.Err())
	for p, want := range map[string]os.FileMode{to: 0o600, filepath.Dir(to): 0o700} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), p)
	}
	assert.NoFileExists(t, owned)
}

// The DSN's tls reaches the dump and restore tools' option file.
func TestOptionFileCarriesTLS(t *testing.T) {
	for mode, want := range map[string][]string{
		"true":        {"loose-ssl-mode=VERIFY_IDENTITY", "loose-ssl-verify-server-cert"},
		"skip-verify": {"loose-ssl-mode=REQUIRED", "loose-ssl\n"},
		"preferred":   {"loose-ssl-mode=PREFERRED"},
	} {
		cfg, err := mysql.ParseDSN("u:p@tcp(db:3306)/a?tls=" + mode)
		require.NoError(t, err)
		cnf, err := (&my{cfg: cfg}).defaultsFile(t.TempDir())
		require.NoError(t, err)
		b, _ := os.ReadFile(cnf)
		for _, w := range want {
			assert.Contains(t, string(b), w, mode)
		}
	}
	cfg, _ := mysql.ParseDSN("u:p@tcp(db:3306)/a")
	cnf, err := (&my{cfg: cfg}).defaultsFile(t.TempDir())
	require.NoError(t, err)
	b, _ := os.ReadFile(cnf)
	assert.NotContains(t, string(b), "ssl")
}
