package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// The tests' PostgreSQL: the server UPSHIFT_TEST_POSTGRES names (a
// superuser's DSN), else one throwaway server (postgresd) for this test
// binary, started on first use and stopped by TestMain. Never the machine's
// own server.
var (
	serverOnce sync.Once
	server     *postgresd.Server
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if server != nil {
		if err := server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the throwaway PostgreSQL:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// adminDSN reaches the maintenance database as a superuser (with the
// throwaway server's generated password, which the DSN carries).
func adminDSN(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("UPSHIFT_TEST_POSTGRES"); v != "" {
		return v
	}
	serverOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		began := time.Now()
		server, serverErr = postgresd.Start(ctx, postgresd.Options{})
		if serverErr == nil {
			t.Logf("throwaway PostgreSQL on %s (initdb and start: %s)", server.Addr(), time.Since(began).Round(time.Millisecond))
		}
	})
	if serverErr != nil {
		t.Fatalf("no throwaway PostgreSQL (install postgresql: run .ci/setup): %v", serverErr)
	}
	return server.DSN("postgres")
}

// dsnFor is adminDSN with the database replaced.
func dsnFor(t *testing.T, db string) string {
	admin := adminDSN(t)
	if u, err := url.Parse(admin); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	return admin + " dbname=" + db
}

// serverAt is the tests' server's host and port, as the plugin names them.
func serverAt(t *testing.T) (host string, port uint16, user string) {
	cfg, err := pgx.ParseConfig(adminDSN(t))
	require.NoError(t, err)
	return cfg.Host, cfg.Port, cfg.User
}

// newA creates a uniquely named database A with some rows; it and any copy
// named after it are dropped when the test ends.
func newA(t *testing.T) (name string, dsn string, admin *pgx.Conn) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, adminDSN(t))
	if err != nil {
		host, port, _ := serverAt(t)
		t.Fatalf("PostgreSQL is not reachable at %s:%d: %v", host, port, err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name = "upshift_test_" + hex.EncodeToString(b)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, n := range []string{name, name + "_b", name + "_other"} {
			_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
		}
		admin.Close(context.Background())
	})
	dsn = dsnFor(t, name)
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE TABLE items(id int primary key, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 500) g")
	require.NoError(t, err)
	closeAndWait(t, c)
	return name, dsn, admin
}

// closeAndWait closes c and waits until its server process is gone. pgx's
// Close does not wait for it, and the plugin counts the sessions on a
// database (copy by template only when there are none, drop only when
// there are none): a session still exiting would count.
func closeAndWait(t *testing.T, c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pid := c.PgConn().PID()
	require.NoError(t, c.Close(ctx))
	admin, err := pgx.Connect(ctx, adminDSN(t))
	require.NoError(t, err)
	defer admin.Close(context.Background())
	for {
		var n int
		require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n))
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server process %d of a closed session is still there", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func provider(t *testing.T, dsn string) plugins.Provider {
	p := sdktest.Provider(t, newPlugin())
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal(dsn), "timeout": cty.StringVal("10s")})})
	require.False(t, d.HasErrors(), "%v", d.Err())
	return p
}

func invoke(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
}

func count(t *testing.T, dsn string) int {
	c, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer c.Close(context.Background())
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "SELECT count(*) FROM items").Scan(&n))
	closeAndWait(t, c)
	return n
}

func TestCopyByTemplateThenByDumpWhenASessionHoldsA(t *testing.T) {
	a, dsn, admin := newA(t)
	p := provider(t, dsn)
	b := a + "_b"
	copyArgs := map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)}

	// Nothing else connected to A: a template copy.
	r := invoke(p, "copy", copyArgs)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "template", r.Result.GetAttr("method").AsString())
	assert.Equal(t, 500, count(t, r.Result.GetAttr("dsn").AsString()))

	// Idempotent: a finished copy is kept.
	r = invoke(p, "copy", copyArgs)
	require.False(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "kept", r.Result.GetAttr("method").AsString())
	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(copyArgs)})
	assert.Equal(t, plugins.CheckApplied, chk.State)

	// A node holds a session on A: dump and restore, said so.
	hold, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer hold.Close(context.Background())
	var lines []string
	r = p.Invoke(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.True}), Progress: func(l string) { lines = append(lines, l) }})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "dump-restore", r.Result.GetAttr("method").AsString())
	assert.True(t, slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "other sessions are connected") }), "%q", lines)
	assert.Equal(t, 500, count(t, r.Result.GetAttr("dsn").AsString()))

	// A database that is not ours is never overwritten or dropped.
	_, err = admin.Exec(context.Background(), "CREATE DATABASE "+a+"_other")
	require.NoError(t, err)
	r = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(a + "_other"), "replace": cty.NullVal(cty.Bool)})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "to", r.Diagnostics[0].Attribute)
	r = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a + "_other")})
	require.True(t, r.Diagnostics.HasErrors())
	r = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a)})
	require.True(t, r.Diagnostics.HasErrors(), "A is never dropped")

	r = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(b)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("dropped").True())
}

func TestBackupReadOnlyAndCheck(t *testing.T) {
	_, dsn, _ := newA(t)
	p := provider(t, dsn)
	to := filepath.Join(t.TempDir(), "a.dump")
	r := invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(to)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	st, err := os.Stat(to)
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(1000))

	r = invoke(p, "read_only", map[string]cty.Value{"enabled": cty.True})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	c, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	_, err = c.Exec(context.Background(), "INSERT INTO items VALUES (1000, 'x')")
	assert.ErrorContains(t, err, "read-only", "a new session cannot write")
	c.Close(context.Background())
	r = invoke(p, "read_only", map[string]cty.Value{"enabled": cty.False})
	require.False(t, r.Diagnostics.HasErrors())

	r = invoke(p, "check", map[string]cty.Value{})
	require.False(t, r.Diagnostics.HasErrors())
	assert.Regexp(t, `^\d+`, r.Result.GetAttr("version").AsString())
}

func TestBadConnectionIsOneLineWithoutSecrets(t *testing.T) {
	cfg, err := pgx.ParseConfig(adminDSN(t))
	require.NoError(t, err)
	at := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	for name, c := range map[string]struct {
		password, database, want string
	}{
		// The right password for a database that does not exist: the
		// server names the database; the password is not repeated.
		"missing database": {cfg.Password, "upshift_no_such_db", fmt.Sprintf(`database "upshift_no_such_db" on %s:%d`, cfg.Host, cfg.Port)},
		// A wrong password: refused, and neither password is shown.
		"wrong password": {"hunter2", "postgres", "password authentication failed"},
	} {
		t.Run(name, func(t *testing.T) {
			if c.password == "hunter2" && cfg.Password == "" {
				t.Skip("the server UPSHIFT_TEST_POSTGRES names takes no password")
			}
			u := url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, c.password), Host: at, Path: "/" + c.database, RawQuery: "sslmode=disable"}
			r := invoke(provider(t, u.String()), "check", map[string]cty.Value{})
			require.True(t, r.Diagnostics.HasErrors())
			msg := r.Diagnostics.Err().Error()
			assert.Contains(t, msg, c.want)
			assert.NotContains(t, msg, "hunter2")
			if cfg.Password != "" {
				assert.NotContains(t, msg, cfg.Password)
			}
			assert.NotContains(t, msg, "\n")
		})
	}

	bad := sdktest.Provider(t, newPlugin())
	d := bad.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal("postgres://u:hunter2@[::1"), "timeout": cty.NullVal(cty.String)})})
	require.True(t, d.HasErrors())
	assert.NotContains(t, d.Err().Error(), "hunter2")
	assert.Equal(t, "dsn", d[0].Attribute)
}
