package nodekit_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

const adminToken = "nodekit-test-token-0123456789abcdef"

// fakeAdmin is a platformd admin API: read-only mode behind a bearer
// token (when token is set) and JSON; it records what it was sent.
type fakeAdmin struct {
	token string

	mu       sync.Mutex
	readOnly bool
	auth     []string
	ctypes   []string
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.ctypes = append(f.ctypes, r.Header.Get("Content-Type"))
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/admin/read-only" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
		return
	}
	if r.Method == http.MethodPost {
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		var body struct{ Enabled bool }
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.readOnly = body.Enabled
	}
	_ = json.NewEncoder(w).Encode(map[string]bool{"read_only": f.readOnly})
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(p, []byte(tok+"\n"), 0o600))
	return p
}

// TestReadOnlySendsTheAdminToken: read_only and the writability check of
// wait_healthy send the token of admin_token_file as a bearer token, with
// a JSON body; without a token file, the refusal says what to give, and
// no message ever holds the token. The old nodekit sent no token.
func TestReadOnlySendsTheAdminToken(t *testing.T) {
	api := &fakeAdmin{token: adminToken}
	srv := httptest.NewServer(api)
	defer srv.Close()
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok","version":"1"}`) // says nothing of read-only
	}))
	defer health.Close()

	v := nodeValue(t.TempDir(), map[string]cty.Value{
		"read_only_url":    cty.StringVal(srv.URL + "/admin/read-only"),
		"health_url":       cty.StringVal(health.URL + "/healthz"),
		"admin_token_file": cty.StringVal(writeToken(t, adminToken)),
	})
	n, err := nodekit.FromValue(v, "/admin/read-only")
	require.NoError(t, err)
	assert.Empty(t, n.AdminSocket, "read_only_url given: no socket")

	ctx := context.Background()
	require.NoError(t, n.SetReadOnly(ctx, true))
	api.mu.Lock()
	assert.Equal(t, []string{"Bearer " + adminToken}, api.auth)
	assert.Equal(t, []string{"application/json"}, api.ctypes)
	assert.True(t, api.readOnly)
	api.mu.Unlock()

	// wait_healthy writable asks the admin API, with the token.
	_, err = n.WaitHealthyFor(ctx, 300*time.Millisecond, 1, nodekit.Want{Writable: true}, func(string, ...any) {})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "healthy but read-only")
	require.NoError(t, n.SetReadOnly(ctx, false))
	_, err = n.WaitHealthyFor(ctx, 5*time.Second, 1, nodekit.Want{Writable: true}, func(string, ...any) {})
	require.NoError(t, err)
	api.mu.Lock()
	for _, a := range api.auth {
		assert.Equal(t, "Bearer "+adminToken, a)
	}
	api.mu.Unlock()

	// A wrong token, or none: refused, and the message says what to do.
	n.AdminTokenFile = writeToken(t, "wrong-token-0123456789")
	err = n.SetReadOnly(ctx, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Contains(t, err.Error(), "the node refuses the token in "+n.AdminTokenFile)
	assert.NotContains(t, err.Error(), "wrong-token")
	n.AdminTokenFile = ""
	err = n.SetReadOnly(ctx, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "give the node admin_token_file")
	n.AdminTokenFile = filepath.Join(t.TempDir(), "missing")
	err = n.SetReadOnly(ctx, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin token")
	api.mu.Lock()
	assert.False(t, api.readOnly, "no refused request switched it")
	api.mu.Unlock()
}

// TestReadOnlyOnTheDefaultSocket: a node without read_only_url has its
// admin API on <data_dir>/admin.sock (platformd's default), not on its
// public address, which the load balancer forwards.
func TestReadOnlyOnTheDefaultSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "nk") // short: a socket path has 107 bytes at most
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	api := &fakeAdmin{}
	ln, err := net.Listen("unix", filepath.Join(dir, nodekit.AdminSocketFile))
	require.NoError(t, err)
	srv := &http.Server{Handler: api}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	// The public address answers 404 on /admin/, as platformd does.
	public := httptest.NewServer(http.NotFoundHandler())
	defer public.Close()

	v := nodeValue(dir, map[string]cty.Value{"address": cty.StringVal(strings.TrimPrefix(public.URL, "http://"))})
	n, err := nodekit.FromValue(v, "/admin/read-only")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "admin.sock"), n.AdminSocket)
	require.NoError(t, n.SetReadOnly(context.Background(), true))
	api.mu.Lock()
	assert.True(t, api.readOnly)
	assert.Equal(t, []string{""}, api.auth, "no token file: no token")
	api.mu.Unlock()

	_, err = nodekit.FromValue(nodeValue(dir, map[string]cty.Value{
		"read_only_url": cty.StringVal("http://127.0.0.1:1/admin/read-only"), "admin_socket": cty.StringVal("/s"),
	}), "/admin/read-only")
	assert.EqualError(t, err, `node "n1": give read_only_url (a TCP admin listener) or admin_socket (a unix socket), not both`)

	// A socket nobody listens on: the error names it.
	require.NoError(t, srv.Close())
	err = n.SetReadOnly(context.Background(), false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read-only request to unix:"+filepath.Join(dir, "admin.sock")+":/admin/read-only")
}

// nodeValue is a node of a nodes list with its data folder in dir, plus
// extra attributes.
func nodeValue(dir string, extra map[string]cty.Value) cty.Value {
	attrs := map[string]cty.Value{
		"name": cty.StringVal("n1"), "address": cty.StringVal("127.0.0.1:9"), "config_file": cty.StringVal(filepath.Join(dir, "config.json")),
		"data_dir": cty.StringVal(dir), "pid_file": cty.StringVal(filepath.Join(dir, "pid")), "log_file": cty.StringVal(filepath.Join(dir, "log")),
		"command": cty.TupleVal([]cty.Value{cty.StringVal("platformd"), cty.StringVal("serve")}),
	}
	for k, v := range extra {
		attrs[k] = v
	}
	return cty.ObjectVal(attrs)
}
