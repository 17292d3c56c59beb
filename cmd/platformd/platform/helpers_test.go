package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/mariadbd"
	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// testDB is a throwaway database for one test.
type testDB struct {
	driver, dsn string
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func sqliteDB(t *testing.T) testDB {
	t.Helper()
	return testDB{driver: DriverSQLite, dsn: filepath.Join(t.TempDir(), "db.sqlite")}
}

// The throwaway database servers, one per engine for the whole test
// binary, started on first use and stopped by TestMain.
var (
	pgOnce, myOnce     sync.Once
	pgServer           *postgresd.Server
	myServer           *mariadbd.Server
	pgErr, myErr       error
	startServerTimeout = 2 * time.Minute
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		_ = pgServer.Stop()
	}
	if myServer != nil {
		_ = myServer.Stop()
	}
	os.Exit(code)
}

// postgresAdminDSN is PLATFORMD_TEST_POSTGRES_DSN, else a throwaway
// PostgreSQL of this test binary's own. It skips when PostgreSQL is not
// installed.
func postgresAdminDSN(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("PLATFORMD_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	if !postgresd.Available() {
		t.Skip("PostgreSQL server binaries are not installed (run .ci/setup)")
	}
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startServerTimeout)
		defer cancel()
		pgServer, pgErr = postgresd.Start(ctx, postgresd.Options{})
	})
	require.NoError(t, pgErr, "starting a throwaway PostgreSQL")
	return pgServer.DSN("postgres")
}

// mysqlAdminDSN is PLATFORMD_TEST_MYSQL_DSN, else a throwaway MariaDB of
// this test binary's own. It skips when MariaDB is not installed.
func mysqlAdminDSN(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("PLATFORMD_TEST_MYSQL_DSN"); v != "" {
		return v
	}
	if !mariadbd.Available() {
		t.Skip("MariaDB server binaries are not installed (run .ci/setup)")
	}
	myOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startServerTimeout)
		defer cancel()
		myServer, myErr = mariadbd.Start(ctx, mariadbd.Options{})
	})
	require.NoError(t, myErr, "starting a throwaway MariaDB")
	return myServer.DSN("")
}

// postgresDB creates a uniquely named database on the test PostgreSQL and
// drops it at the end.
func postgresDB(t *testing.T) testDB {
	t.Helper()
	adminDSN := postgresAdminDSN(t)
	admin, err := sql.Open("pgx", adminDSN)
	require.NoError(t, err)
	name := "platformd_test_" + randomSuffix()
	_, err = admin.Exec("CREATE DATABASE " + name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	u, err := url.Parse(adminDSN)
	require.NoError(t, err)
	u.Path = "/" + name
	return testDB{driver: DriverPostgres, dsn: u.String()}
}

// mysqlDB creates a uniquely named database on the test MariaDB and drops
// it at the end.
func mysqlDB(t *testing.T) testDB {
	t.Helper()
	adminDSN := mysqlAdminDSN(t)
	admin, err := sql.Open("mysql", adminDSN)
	require.NoError(t, err)
	name := "platformd_test_" + randomSuffix()
	_, err = admin.Exec("CREATE DATABASE " + name)
	require.NoError(t, err)
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	c, err := mysql.ParseDSN(adminDSN)
	require.NoError(t, err)
	c.DBName = name
	return testDB{driver: DriverMySQL, dsn: c.FormatDSN()}
}

func newConfig(t *testing.T, db testDB, version int, processing bool, peers ...string) *Config {
	t.Helper()
	cfg := &Config{
		Name:       "node-" + randomSuffix()[:4],
		Listen:     "127.0.0.1:0",
		Version:    version,
		Processing: processing,
		DataDir:    filepath.Join(t.TempDir(), "data"),
		DBDriver:   db.driver,
		DBDSN:      db.dsn,
		Peers:      peers,
		// The admin API on a loopback port of its own, with a token.
		AdminListen: "127.0.0.1:0",
		AdminToken:  testAdminToken,
	}
	require.NoError(t, cfg.Validate())
	return cfg
}

// node is an in-process server under test.
type node struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

// stop shuts the node down and returns Serve's result.
func (n *node) stop(t *testing.T) error {
	t.Helper()
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err // let a second stop (cleanup) see it too
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("node did not stop within 15s")
		return nil
	}
}

// launch starts cfg on a free loopback port and returns at once.
func launch(t *testing.T, cfg *Config, tune func(*Server)) *node {
	t.Helper()
	srv, err := NewServer(cfg, nil)
	require.NoError(t, err)
	return launchServer(t, srv, tune)
}

// launchServer is launch for a Server already made (with a logger).
func launchServer(t *testing.T, srv *Server, tune func(*Server)) *node {
	t.Helper()
	srv.ProcessInterval = 50 * time.Millisecond
	srv.PeerTimeout = time.Second
	if tune != nil {
		tune(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{Server: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { _ = n.stop(t) })
	return n
}

// startNode starts cfg and waits until it is ready.
func startNode(t *testing.T, cfg *Config) *node {
	t.Helper()
	return waitReady(t, launch(t, cfg, nil))
}

// waitReady waits until a launched node is ready.
func waitReady(t *testing.T, n *node) *node {
	t.Helper()
	select {
	case <-n.Ready():
		return n
	case err := <-n.done:
		n.done <- err
		t.Fatalf("node failed to start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("node not ready within 15s")
	}
	return nil
}

// startNodeErr starts cfg and returns the error it fails to start with.
func startNodeErr(t *testing.T, cfg *Config) error {
	t.Helper()
	n := launch(t, cfg, nil)
	select {
	case <-n.Ready():
		t.Fatal("node started, want a start-up error")
	case err := <-n.done:
		n.done <- err
		require.Error(t, err)
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("node neither started nor failed within 15s")
	}
	return nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// testAdminToken is the admin token of newConfig's nodes.
const testAdminToken = "test-admin-token-0123456789abcdef"

// adminURL is the base URL of a node's admin API on TCP.
func (n *node) adminURL() string { return "http://" + n.AdminAddr().String() }

// admin sends a JSON request to the node's admin API with its token.
func admin(t *testing.T, n *node, method, path string, body any, out any) *http.Response {
	t.Helper()
	return doWith(t, method, n.adminURL()+path, body, out, map[string]string{
		"Authorization": "Bearer " + testAdminToken, "Content-Type": "application/json",
	})
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func do(t *testing.T, method, u string, body any, out any) *http.Response {
	t.Helper()
	return doWith(t, method, u, body, out, nil)
}

// doWith is do with request headers.
func doWith(t *testing.T, method, u string, body any, out any, header map[string]string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(data, out), "body: %s", data)
	}
	return resp
}

// stat reads a row of the stats table.
func stat(t *testing.T, cfg *Config, name string) int64 {
	t.Helper()
	db, err := OpenDB(context.Background(), cfg)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	var v int64
	require.NoError(t, db.QueryRow(dialect(cfg.DBDriver).q("SELECT value FROM stats WHERE name = ?"), name).Scan(&v))
	return v
}

// syncBuffer is a bytes.Buffer a node's logger and a test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// slogTo is a text logger writing to w.
func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
