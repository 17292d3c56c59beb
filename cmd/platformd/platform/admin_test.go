package platform

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// raw sends body with the given headers and returns the status and body.
func raw(t *testing.T, c *http.Client, method, u, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestAdminAPIOnItsOwnListener: the public listener (the one the load
// balancer forwards) answers 404 on /admin/*, however the request is
// made; the admin listener wants the token, compared whole, and JSON.
// On the old platformd a text/plain POST to the public port (a simple
// form POST from any web page) switched the node to read-only.
func TestAdminAPIOnItsOwnListener(t *testing.T) {
	n := startNode(t, newConfig(t, sqliteDB(t), Version1, false))
	enable := `{"enabled":true}`
	good := "Bearer " + testAdminToken

	for _, h := range []map[string]string{
		{"Content-Type": "text/plain"},
		{"Content-Type": "application/x-www-form-urlencoded"},
		{"Content-Type": "application/json", "Authorization": good},
	} {
		code, body := raw(t, httpClient, "POST", n.URL()+"/admin/read-only", enable, h)
		assert.Equal(t, http.StatusNotFound, code, "public POST /admin/read-only %v: %s", h, body)
		assert.JSONEq(t, `{"error":"not-found"}`, body)
	}
	code, _ := raw(t, httpClient, "GET", n.URL()+"/admin/read-only", "", map[string]string{"Authorization": good})
	assert.Equal(t, http.StatusNotFound, code, "public GET /admin/read-only")
	require.False(t, n.ReadOnly(), "nothing through the public listener may switch read-only")

	adminRO := n.adminURL() + "/admin/read-only"
	require.NotEqual(t, n.URL(), n.adminURL())
	for name, h := range map[string]map[string]string{
		"no token":           {"Content-Type": "application/json"},
		"wrong token":        {"Content-Type": "application/json", "Authorization": "Bearer " + strings.Repeat("x", len(testAdminToken))},
		"token prefix":       {"Content-Type": "application/json", "Authorization": good[:len(good)-1]},
		"token and more":     {"Content-Type": "application/json", "Authorization": good + "x"},
		"not a bearer":       {"Content-Type": "application/json", "Authorization": "Basic " + testAdminToken},
		"bare token":         {"Content-Type": "application/json", "Authorization": testAdminToken},
		"text/plain, no tok": {"Content-Type": "text/plain"},
	} {
		req, err := http.NewRequest("POST", adminRO, strings.NewReader(enable))
		require.NoError(t, err)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", name, b)
		assert.Equal(t, `Bearer realm="platformd admin"`, resp.Header.Get("WWW-Authenticate"), name)
		assert.NotContains(t, string(b), testAdminToken, name)
	}
	code, _ = raw(t, httpClient, "GET", adminRO, "", nil)
	assert.Equal(t, http.StatusUnauthorized, code, "GET without the token")
	require.False(t, n.ReadOnly())

	// The token, but not JSON: 415.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		code, body := raw(t, httpClient, "POST", adminRO, enable, map[string]string{"Authorization": good, "Content-Type": ct})
		assert.Equal(t, http.StatusUnsupportedMediaType, code, "Content-Type %q: %s", ct, body)
	}
	require.False(t, n.ReadOnly())

	// The token and JSON (a charset parameter is fine).
	code, body := raw(t, httpClient, "POST", adminRO, enable, map[string]string{"Authorization": good, "Content-Type": "application/json; charset=utf-8"})
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"read_only":true}`, body)
	assert.True(t, n.ReadOnly())
	var ro map[string]bool
	resp := admin(t, n, "GET", "/admin/read-only", nil, &ro)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, map[string]bool{"read_only": true}, ro)
	assert.Equal(t, n.Config().Name, resp.Header.Get(HeaderNode))
}

// TestAdminSocketByDefault: without admin_listen the admin API is a unix
// socket in the data folder, mode 0600, gone when the node stops; with a
// token configured it still wants it.
func TestAdminSocketByDefault(t *testing.T) {
	cfg := newConfig(t, sqliteDB(t), Version1, false)
	cfg.AdminListen, cfg.AdminToken = "", ""
	require.NoError(t, cfg.Validate())
	sock := filepath.Join(cfg.DataDir, AdminSocketFile)
	require.Equal(t, sock, cfg.AdminListen)
	n := startNode(t, cfg)

	fi, err := os.Lstat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, fi.Mode().Type())
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(cfg.DataDir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "."+AdminSocketFile), "temporary socket %s left behind", e.Name())
	}
	c := unixClient(sock)
	code, body := raw(t, c, "POST", "http://node/admin/read-only", `{"enabled":true}`, map[string]string{"Content-Type": "application/json"})
	require.Equal(t, http.StatusOK, code, body)
	assert.True(t, n.ReadOnly())
	code, _ = raw(t, c, "POST", "http://node/admin/read-only", `{"enabled":false}`, map[string]string{"Content-Type": "text/plain"})
	assert.Equal(t, http.StatusUnsupportedMediaType, code)
	assert.True(t, n.ReadOnly())
	require.NoError(t, n.stop(t))
	_, err = os.Lstat(sock)
	assert.ErrorIs(t, err, os.ErrNotExist, "the socket is removed at shutdown")

	// A stale socket is replaced; a token in the config is required on
	// the socket too.
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())
	cfg2 := *cfg
	cfg2.AdminToken = testAdminToken
	n2 := startNode(t, &cfg2)
	code, _ = raw(t, unixClient(sock), "GET", "http://node/admin/read-only", "", nil)
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = raw(t, unixClient(sock), "GET", "http://node/admin/read-only", "", map[string]string{"Authorization": "Bearer " + testAdminToken})
	assert.Equal(t, http.StatusOK, code)
	require.NoError(t, n2.stop(t))
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// TestAdminConfig: a TCP admin listener needs a token; the token file is
// read at start; errors never quote a token.
func TestAdminConfig(t *testing.T) {
	base := `"name":"n","listen":"127.0.0.1:1","version":"1","data_dir":"/d","db.driver":"sqlite","db.dsn":"x"`
	for name, tc := range map[string]struct{ json, err string }{
		"tcp without token": {`{` + base + `,"admin_listen":"127.0.0.1:2"}`, "admin_listen 127.0.0.1:2 is a TCP address: set admin_token or admin_token_file"},
		"same as listen":    {`{` + base + `,"admin_listen":"127.0.0.1:1","admin_token":"0123456789abcdef"}`, "admin_listen 127.0.0.1:1 is the public listen address: the admin API needs a listener of its own"},
		"short token":       {`{` + base + `,"admin_listen":"127.0.0.1:2","admin_token":"short-secret"}`, "admin_token: want at least 16 characters"},
		"both":              {`{` + base + `,"admin_token":"0123456789abcdef","admin_token_file":"/t"}`, "give admin_token or admin_token_file, not both"},
		"token not string":  {`{` + base + `,"admin_token":["secret-in-a-list"]}`, "admin_token: want a string"},
		"bad address":       {`{` + base + `,"admin_listen":"localhost","admin_token":"0123456789abcdef"}`, `admin_listen "localhost": want host:port or a unix socket path`},
	} {
		_, err := ParseConfig([]byte(tc.json))
		require.Error(t, err, name)
		assert.ErrorIs(t, err, ErrConfig, name)
		assert.EqualError(t, err, tc.err, name)
		assert.NotContains(t, err.Error(), "secret", name)
	}

	cfg, err := ParseConfig([]byte(`{` + base + `}`))
	require.NoError(t, err)
	assert.Equal(t, "/d/admin.sock", cfg.AdminListen)
	assert.True(t, cfg.AdminUnix())

	tokFile := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(tokFile, []byte("  file-token-0123456789\n"), 0o600))
	cfg, err = ParseConfig([]byte(`{` + base + `,"admin_listen":"127.0.0.1:2","admin_token_file":"` + tokFile + `"}`))
	require.NoError(t, err)
	tok, err := cfg.LoadAdminToken()
	require.NoError(t, err)
	assert.Equal(t, "file-token-0123456789", tok)
	assert.Empty(t, cfg.Extra, "admin keys are not Extra")

	require.NoError(t, os.WriteFile(tokFile, []byte("short-secret\n"), 0o600))
	_, err = NewServer(cfg, nil)
	require.ErrorIs(t, err, ErrConfig)
	assert.NotContains(t, err.Error(), "short-secret")
	cfg.AdminTokenFile = filepath.Join(t.TempDir(), "missing")
	_, err = NewServer(cfg, nil)
	require.ErrorIs(t, err, ErrConfig)
	assert.Equal(t, ExitConfig, ExitCode(err))
}

// TestHealthzChecksTheDatabase: /healthz pings the database, answers 503
// "unavailable" with a generic reason while it is down (the error, with
// the database's user, name and address, goes to the node's log only),
// shares one ping between the checks of a short while, bounds a ping that
// hangs, and says ok again once the database answers. The old /healthz
// said ok whatever the database did.
func TestHealthzChecksTheDatabase(t *testing.T) {
	var down atomic.Bool
	var hang atomic.Bool
	var pings atomic.Int32
	secret := errors.New(`failed to connect to user=platform_secret database=platform_a: 10.9.8.7:5432: connection refused`)
	var logBuf syncBuffer
	cfg := newConfig(t, sqliteDB(t), Version1, false)
	srv, err := NewServer(cfg, slogTo(&logBuf))
	require.NoError(t, err)
	n := launchServer(t, srv, func(s *Server) {
		s.HealthDBCache = time.Hour
		s.HealthDBTimeout = 200 * time.Millisecond
		real := s.ping
		s.ping = func(ctx context.Context) error {
			pings.Add(1)
			if hang.Load() {
				<-ctx.Done()
				return ctx.Err()
			}
			if down.Load() {
				return secret
			}
			return real(ctx)
		}
	})
	waitReady(t, n)
	forget := func() { n.health.mu.Lock(); n.health.at = time.Time{}; n.health.mu.Unlock() }

	var h Health
	resp := do(t, "GET", n.URL()+"/healthz", nil, &h)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", h.Status)
	assert.Empty(t, h.Reason)

	down.Store(true)
	forget()
	pings.Store(0)
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	// One connection per check, none left unused (Shutdown waits 5s for
	// a connection that never sent a request).
	once := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 20 {
		wg.Go(func() {
			code, body := raw(t, once, "GET", n.URL()+"/healthz", "", nil)
			codes <- code
			assert.NotContains(t, body, "platform_secret")
			assert.NotContains(t, body, "platform_a")
			assert.NotContains(t, body, "10.9.8.7")
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		assert.Equal(t, http.StatusServiceUnavailable, c)
	}
	assert.Equal(t, int32(1), pings.Load(), "20 checks within the cache period: one ping")
	resp = do(t, "GET", n.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, Health{Status: "unavailable", Reason: "database unreachable", Name: cfg.Name, Version: "1", Pid: os.Getpid(), Instance: n.Instance()}, h)
	assert.Contains(t, logBuf.String(), "platform_secret", "the details are on the node's log")

	// A ping that hangs is cut at HealthDBTimeout.
	hang.Store(true)
	forget()
	start := time.Now()
	resp = do(t, "GET", n.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Less(t, time.Since(start), 5*time.Second)
	hang.Store(false)

	down.Store(false)
	forget()
	resp = do(t, "GET", n.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", h.Status)
}

// TestDatabaseErrorsAreGeneric: a failed database call answers 500 with a
// generic detail; the error is logged on the node. The old body carried
// the driver's error ("sql: database is closed" here; on PostgreSQL the
// user, database and address).
func TestDatabaseErrorsAreGeneric(t *testing.T) {
	var logBuf syncBuffer
	cfg := newConfig(t, sqliteDB(t), Version1, false)
	srv, err := NewServer(cfg, slogTo(&logBuf))
	require.NoError(t, err)
	n := waitReady(t, launchServer(t, srv, nil))
	require.NoError(t, n.db.Close())

	var eb ErrorBody
	resp := do(t, "POST", n.URL()+"/items", map[string]string{"value": "v"}, &eb)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, ErrorBody{Error: "database", Detail: "insert item failed: database error"}, eb)
	resp = do(t, "GET", n.URL()+"/items/x", nil, &eb)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, ErrorBody{Error: "database", Detail: "get item failed: database error"}, eb)
	resp = do(t, "GET", n.URL()+"/items", nil, &eb)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, ErrorBody{Error: "database", Detail: "list items failed: database error"}, eb)
	assert.Contains(t, logBuf.String(), "database is closed")
}

// TestDatabaseDownOnPostgres: a real PostgreSQL stopped under a ready
// node. /healthz turns 503 within a cache period or two, and neither it
// nor a failed read or write tells the client the database's user, name
// or address (the pgx error names all three).
func TestDatabaseDownOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server of its own")
	}
	if !postgresd.Available() {
		t.Skip("PostgreSQL server binaries are not installed (run .ci/setup)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startServerTimeout)
	defer cancel()
	pg, err := postgresd.Start(ctx, postgresd.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Stop() })
	adm, err := sql.Open("pgx", pg.DSN("postgres"))
	require.NoError(t, err)
	_, err = adm.Exec("CREATE DATABASE platform_secret_db")
	require.NoError(t, err)
	require.NoError(t, adm.Close())

	var logBuf syncBuffer
	cfg := newConfig(t, testDB{driver: DriverPostgres, dsn: pg.DSN("platform_secret_db")}, Version1, false)
	srv, err := NewServer(cfg, slogTo(&logBuf))
	require.NoError(t, err)
	n := waitReady(t, launchServer(t, srv, func(s *Server) { s.HealthDBCache = 100 * time.Millisecond }))
	resp := do(t, "GET", n.URL()+"/healthz", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, pg.Stop())
	_, port, _ := net.SplitHostPort(pg.Addr())
	leaks := []string{"platform_secret_db", pg.User, port}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for code := 0; code != http.StatusServiceUnavailable; {
		require.True(t, time.Now().Before(deadline), "/healthz still %d 15s after the database stopped: %s", code, body)
		code, body = raw(t, httpClient, "GET", n.URL()+"/healthz", "", nil)
	}
	assert.Contains(t, body, `"reason":"database unreachable"`)
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/healthz", ""}, {"GET", "/items/a", ""}, {"GET", "/items", ""}, {"GET", "/slow?ms=0", ""}, {"POST", "/items", `{"value":"v"}`},
	} {
		code, body := raw(t, httpClient, req.method, n.URL()+req.path, req.body, map[string]string{"Content-Type": "application/json"})
		assert.GreaterOrEqual(t, code, 500, "%s %s: %s", req.method, req.path, body)
		for _, l := range leaks {
			assert.NotContains(t, body, l, "%s %s tells the client %q: %s", req.method, req.path, l, body)
		}
	}
	assert.Contains(t, logBuf.String(), "platform_secret_db", "the node's log has the details")
}
