package platform

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// migratedPair returns a version-1 config and a version-2 config on a
// database migrated to schema 2 with its data folder (the node being upgraded).
func migratedPair(t *testing.T) (*Config, *Config) {
	t.Helper()
	cfg1 := newConfig(t, sqliteDB(t), Version1, false)
	n := startNode(t, cfg1)
	require.NoError(t, n.stop(t))
	cfg2 := *cfg1
	cfg2.Version = Version2
	_, err := Migrate(context.Background(), &cfg2)
	require.NoError(t, err)
	return cfg1, &cfg2
}

func TestRollingUpgradeMarker(t *testing.T) {
	old := startNode(t, newConfig(t, sqliteDB(t), Version1, true))
	_, cfg2 := migratedPair(t)

	// A version-1 peer and no marker: refused, with the contract's message.
	closed := freeAddr(t) // nothing listens there: not a conflict
	cfg2.Peers = []string{old.URL(), "http://" + closed}
	err := startNodeErr(t, cfg2)
	var ce *ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ExitConflict, ExitCode(err))
	assert.Equal(t, "conflict: peers "+old.URL()+" still run version 1; create "+
		filepath.Join(cfg2.DataDir, "rolling-upgrade")+" to run alongside them", err.Error())

	// With the marker it starts and runs alongside.
	require.NoError(t, os.WriteFile(cfg2.MarkerPath(), nil, 0o644))
	n2 := startNode(t, cfg2)
	var h Health
	resp := do(t, "GET", n2.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "2", h.Version)
	assert.False(t, h.ReadOnly, "an upgraded node starts writable")
}

func TestVersion2NoConflictWithUnreachableOrUpgradedPeers(t *testing.T) {
	_, cfgA := migratedPair(t)
	a := startNode(t, cfgA) // a version-2 peer
	_, cfgB := migratedPair(t)
	cfgB.Peers = []string{a.URL(), "http://" + freeAddr(t)}
	startNode(t, cfgB)
}

func TestStartingState(t *testing.T) {
	// A peer that answers /version only when released keeps the node in its
	// start-up checks.
	release := make(chan struct{})
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		writeJSON(w, http.StatusOK, map[string]string{"version": "2"})
	}))
	defer peer.Close()
	_, cfg2 := migratedPair(t)
	cfg2.Peers = []string{peer.URL}
	n := launch(t, cfg2, func(s *Server) { s.PeerTimeout = 5 * time.Second })

	require.Eventually(t, func() bool { return n.Addr() != nil }, 5*time.Second, 10*time.Millisecond)
	var h Health
	resp := do(t, "GET", n.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "starting", h.Status)
	var ver map[string]string
	resp = do(t, "GET", n.URL()+"/version", nil, &ver)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "/version answers while starting, for peers")
	resp = do(t, "GET", n.URL()+"/items", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	close(release)
	select {
	case <-n.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after the peer answered")
	}
	resp = do(t, "GET", n.URL()+"/healthz", nil, &h)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestSchemaRefusals(t *testing.T) {
	ctx := context.Background()

	t.Run("version 2 on schema 1", func(t *testing.T) {
		cfg1 := newConfig(t, sqliteDB(t), Version1, false)
		n := startNode(t, cfg1)
		require.NoError(t, n.stop(t))
		cfg2 := *cfg1
		cfg2.Version = Version2
		err := startNodeErr(t, &cfg2)
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Equal(t, ExitVersionMismatch, ExitCode(err))
		assert.Contains(t, err.Error(), "run platformd migrate first")
	})

	t.Run("version 2 on empty database", func(t *testing.T) {
		err := startNodeErr(t, newConfig(t, sqliteDB(t), Version2, false))
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Contains(t, err.Error(), "run platformd migrate first")
	})

	t.Run("version 1 on schema 2", func(t *testing.T) {
		cfg1, _ := migratedPair(t)
		cfg1.DataDir = filepath.Join(t.TempDir(), "fresh")
		err := startNodeErr(t, cfg1)
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Contains(t, err.Error(), "database is at schema 2, this node runs version 1")
	})

	t.Run("version 1 notices a migration at runtime", func(t *testing.T) {
		cfg1 := newConfig(t, sqliteDB(t), Version1, false)
		n := startNode(t, cfg1)
		resp := do(t, "POST", n.URL()+"/items", map[string]string{"value": "before"}, nil)
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		cfg2 := *cfg1
		cfg2.Version = Version2
		cfg2.DataDir = filepath.Join(t.TempDir(), "other")
		_, err := Migrate(ctx, &cfg2)
		require.NoError(t, err)
		var eb ErrorBody
		resp = do(t, "POST", n.URL()+"/items", map[string]string{"value": "after"}, &eb)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, "schema-mismatch", eb.Error)
		assert.Contains(t, eb.Detail, "database is at schema 2, this node runs version 1")
		assert.Empty(t, resp.Header.Get(HeaderReadOnly), "not a read-only refusal")
	})
}

func TestMigrateRefusals(t *testing.T) {
	ctx := context.Background()

	t.Run("empty database", func(t *testing.T) {
		_, err := Migrate(ctx, newConfig(t, sqliteDB(t), Version2, false))
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Contains(t, err.Error(), "no platformd schema")
	})

	t.Run("schema newer than target", func(t *testing.T) {
		cfg1, _ := migratedPair(t)
		_, err := Migrate(ctx, cfg1)
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Equal(t, ExitVersionMismatch, ExitCode(err))
		assert.EqualError(t, err, "database schema 2 is newer than target version 1")
	})

	t.Run("unknown target version", func(t *testing.T) {
		_, cfg2 := migratedPair(t)
		cfg2.Version = 3
		_, err := Migrate(ctx, cfg2)
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Contains(t, err.Error(), "unknown version 3")
	})

	t.Run("unknown schema in database", func(t *testing.T) {
		_, cfg2 := migratedPair(t)
		db, err := OpenDB(ctx, cfg2)
		require.NoError(t, err)
		_, err = db.Exec("UPDATE schema_info SET version = 7")
		require.NoError(t, err)
		require.NoError(t, db.Close())
		_, err = Migrate(ctx, cfg2)
		require.ErrorIs(t, err, ErrVersionMismatch)
		assert.Contains(t, err.Error(), "unknown schema 7")
	})

	t.Run("interrupted run finishes the data folder", func(t *testing.T) {
		cfg1 := newConfig(t, sqliteDB(t), Version1, false)
		n := startNode(t, cfg1)
		require.NoError(t, n.stop(t))
		cfg2 := *cfg1
		cfg2.Version = Version2
		// Database migrated through another data folder, as if the data
		// folder step had not run.
		other := cfg2
		other.DataDir = t.TempDir()
		_, err := Migrate(ctx, &other)
		require.NoError(t, err)
		res, err := Migrate(ctx, &cfg2)
		require.NoError(t, err)
		assert.Equal(t, &MigrateResult{From: 2, To: 2, DataDir: true}, res)
		_, err = os.Stat(filepath.Join(cfg2.DataDir, metaV1))
		assert.ErrorIs(t, err, os.ErrNotExist, "meta.txt converted away")
		m, err := readMetaV2(cfg2.DataDir)
		require.NoError(t, err)
		assert.Equal(t, cfg1.Name, m.Name)
	})
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	n := startNode(t, newConfig(t, sqliteDB(t), Version1, false))
	type result struct {
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := httpClient.Get(n.URL() + "/slow?ms=700")
		if err != nil {
			got <- result{err: err}
			return
		}
		_ = resp.Body.Close()
		got <- result{code: resp.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in flight
	start := time.Now()
	n.cancel()

	// healthz turns 503 as soon as the shutdown begins.
	require.Eventually(t, func() bool { return n.state.Load() == stateStopping }, 2*time.Second, 5*time.Millisecond)
	rec := httptest.NewRecorder()
	n.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), `"status":"stopping"`)

	r := <-got
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.code, "the in-flight request finishes")
	require.NoError(t, n.stop(t))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "Serve waited for the request")
	_, err := net.DialTimeout("tcp", n.Addr().String(), time.Second)
	assert.Error(t, err, "listener closed")
}

func TestProcessingRole(t *testing.T) {
	proc := newConfig(t, sqliteDB(t), Version1, true)
	plain := newConfig(t, sqliteDB(t), Version1, false)
	p := startNode(t, proc)
	startNode(t, plain)

	require.Eventually(t, func() bool { return stat(t, proc, statTicks) >= 3 }, 5*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, stat(t, plain, statTicks), "a non-processing node does no processing")

	p.SetReadOnly(true)
	before := stat(t, proc, statTicks)
	time.Sleep(250 * time.Millisecond)
	assert.Equal(t, before, stat(t, proc, statTicks), "no processing while read-only")
	p.SetReadOnly(false)
	require.Eventually(t, func() bool { return stat(t, proc, statTicks) > before }, 5*time.Second, 20*time.Millisecond)
}

func TestReadOnlyIsRuntimeOnly(t *testing.T) {
	cfg := newConfig(t, sqliteDB(t), Version1, false)
	n := startNode(t, cfg)
	resp := admin(t, n, "POST", "/admin/read-only", map[string]any{}, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "enabled is required")
	n.SetReadOnly(true)
	require.NoError(t, n.stop(t))
	n2 := startNode(t, cfg)
	var ro map[string]bool
	admin(t, n2, "GET", "/admin/read-only", nil, &ro)
	assert.False(t, ro["read_only"], "a restart starts writable")
}

func TestSharedSQLiteBetweenNodes(t *testing.T) {
	// Three nodes on one SQLite file, started together on an empty database,
	// writing at once: every acknowledged write is there.
	db := sqliteDB(t)
	var nodes []*node
	for i := 0; i < 3; i++ {
		nodes = append(nodes, launch(t, newConfig(t, db, Version1, i == 0), nil))
	}
	for _, n := range nodes {
		select {
		case <-n.Ready():
		case err := <-n.done:
			t.Fatalf("start: %v", err)
		case <-time.After(15 * time.Second):
			t.Fatal("not ready")
		}
	}
	type ack struct {
		id   string
		code int
	}
	acks := make(chan ack, 60)
	for _, n := range nodes {
		go func() {
			// No require here: FailNow must run on the test goroutine.
			for i := 0; i < 20; i++ {
				resp, err := httpClient.Post(n.URL()+"/items", "application/json", strings.NewReader(`{"value":"v"}`))
				if err != nil {
					acks <- ack{code: -1}
					continue
				}
				var created map[string]string
				_ = json.NewDecoder(resp.Body).Decode(&created)
				_ = resp.Body.Close()
				acks <- ack{created["id"], resp.StatusCode}
			}
		}()
	}
	for i := 0; i < 60; i++ {
		a := <-acks
		require.Equal(t, http.StatusCreated, a.code)
		resp := do(t, "GET", nodes[i%3].URL()+"/items/"+a.id, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
