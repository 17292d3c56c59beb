package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/mariadbd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// envServer names another MariaDB for these tests instead of the throwaway
// one: a go-sql-driver DSN without a database, ending in "/", e.g.
// root@tcp(127.0.0.1:3306)/, as a user allowed to create databases.
const envServer = "UPSHIFT_TEST_MYSQL"

// One throwaway MariaDB per test binary, started by the first test that
// needs it and stopped by TestMain: tests never reach the machine's server.
var (
	serverOnce sync.Once
	throwaway  *mariadbd.Server
	serverBase string
	serverErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if throwaway != nil {
		if err := throwaway.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the throwaway MariaDB: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// serverDSN reaches the tests' MariaDB as root (no database selected;
// append one): the server named by UPSHIFT_TEST_MYSQL, else a throwaway
// one in a temp dir on a free loopback port.
func serverDSN(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		if v := os.Getenv(envServer); v != "" {
			serverBase = v
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		t0 := time.Now()
		throwaway, serverErr = mariadbd.Start(ctx, mariadbd.Options{})
		if serverErr == nil {
			serverBase = throwaway.DSN("")
			t.Logf("throwaway MariaDB at %s (install + start %s)", throwaway.Addr(), time.Since(t0).Round(time.Millisecond))
		}
	})
	if serverErr != nil {
		t.Fatalf("no MariaDB for the tests: %v (install mariadb-server, or set %s to a server's DSN ending in /)", serverErr, envServer)
	}
	return serverBase
}

// serverAddr is the tests' MariaDB's host:port.
func serverAddr(t *testing.T) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(serverDSN(t))
	require.NoError(t, err, "%s", envServer)
	return cfg.Addr
}

func newA(t *testing.T) (string, *sql.DB) {
	admin, err := sql.Open("mysql", serverDSN(t))
	require.NoError(t, err)
	if err := admin.Ping(); err != nil {
		t.Fatalf("MariaDB is not reachable at %s: %v", serverAddr(t), err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "upshift_test_" + hex.EncodeToString(b)
	for _, q := range []string{"CREATE DATABASE " + name, "CREATE TABLE " + name + ".items (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB"} {
		_, err = admin.Exec(q)
		require.NoError(t, err)
	}
	for i := 1; i <= 300; i++ {
		_, err = admin.Exec("INSERT INTO "+name+".items VALUES (?, ?)", i, "v")
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, n := range []string{name, name + "_b", name + "_other"} {
			_, _ = admin.Exec("DROP DATABASE IF EXISTS " + n)
		}
		admin.Close()
	})
	return name, admin
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

func TestCopyBackupAndGuards(t *testing.T) {
	a, admin := newA(t)
	p := provider(t, serverDSN(t)+a)
	b := a + "_b"
	args := map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)}

	r := invoke(p, "copy", args)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	dsnB := r.Result.GetAttr("dsn").AsString()
	db, err := sql.Open("mysql", dsnB)
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM items").Scan(&n))
	db.Close()
	assert.Equal(t, 300, n, "B, reached with the returned dsn, has A's rows")

	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(args)})
	assert.Equal(t, plugins.CheckApplied, chk.State)
	r = invoke(p, "copy", args)
	require.False(t, r.Diagnostics.HasErrors(), "idempotent")

	_, err = admin.Exec("CREATE DATABASE " + a + "_other")
	require.NoError(t, err)
	r = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(a + "_other"), "replace": cty.NullVal(cty.Bool)})
	require.True(t, r.Diagnostics.HasErrors(), "a database not made by upshift is never overwritten")
	assert.Equal(t, "to", r.Diagnostics[0].Attribute)
	require.True(t, invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a + "_other")}).Diagnostics.HasErrors())
	require.True(t, invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a)}).Diagnostics.HasErrors(), "A is never dropped")

	to := filepath.Join(t.TempDir(), "a.sql")
	r = invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(to)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	body, err := os.ReadFile(to)
	require.NoError(t, err)
	assert.Contains(t, string(body), "CREATE TABLE `items`")
	assert.Contains(t, string(body), "-- Dump completed")

	r = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(b)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("dropped").True())
	r = invoke(p, "check", map[string]cty.Value{})
	require.False(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Result.GetAttr("version").AsString(), "MariaDB")
}

func TestMissingDatabaseAndBadDSN(t *testing.T) {
	p := provider(t, "root:hunter2@tcp("+serverAddr(t)+")/upshift_no_such_db")
	r := invoke(p, "check", map[string]cty.Value{})
	require.True(t, r.Diagnostics.HasErrors())
	msg := r.Diagnostics.Err().Error()
	assert.NotContains(t, msg, "hunter2")
	assert.Contains(t, msg, "upshift_no_such_db")

	bad := sdktest.Provider(t, newPlugin())
	d := bad.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal("root:hunter2@127.0.0.1/x"), "timeout": cty.NullVal(cty.String)})})
	require.True(t, d.HasErrors())
	assert.NotContains(t, d.Err().Error(), "hunter2")
}
