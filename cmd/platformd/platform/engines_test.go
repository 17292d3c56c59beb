package platform

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEngines runs the same life of a node on every engine: version 1 reads,
// writes and read-only mode, the processing loop, migration to 2 (twice),
// version 1 refused on the migrated database, and version 2 serving it.
func TestEngines(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) testDB{
		"sqlite":   sqliteDB,
		"postgres": postgresDB,
		"mysql":    mysqlDB,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testNodeLife(t, mk(t))
		})
	}
}

func testNodeLife(t *testing.T, db testDB) {
	ctx := context.Background()
	cfg1 := newConfig(t, db, Version1, true)
	n := startNode(t, cfg1)
	base := n.URL()

	// Health and version, with the identity headers.
	var h Health
	resp := do(t, "GET", base+"/healthz", nil, &h)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, Health{Status: "ok", Name: cfg1.Name, Version: "1", Processing: true, Pid: os.Getpid(), Instance: n.Instance()}, h)
	assert.Equal(t, cfg1.Name, resp.Header.Get(HeaderNode))
	assert.Equal(t, "1", resp.Header.Get(HeaderVersion))
	var ver map[string]string
	do(t, "GET", base+"/version", nil, &ver)
	assert.Equal(t, map[string]string{"version": "1"}, ver)

	// Writes, with and without an id, then reads.
	var created map[string]string
	resp = do(t, "POST", base+"/items", map[string]string{"id": "a", "value": "alpha"}, &created)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, "a", created["id"])
	resp = do(t, "POST", base+"/items", map[string]string{"value": "beta"}, &created)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	genID := created["id"]
	require.NotEmpty(t, genID)
	var eb ErrorBody
	resp = do(t, "POST", base+"/items", map[string]string{"id": "a", "value": "again"}, &eb)
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	assert.Equal(t, "exists", eb.Error)
	resp = do(t, "POST", base+"/items", map[string]string{"id": "novalue"}, &eb)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	var it Item
	resp = do(t, "GET", base+"/items/a", nil, &it)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, Item{ID: "a", Value: "alpha"}, it)
	resp = do(t, "GET", base+"/items/"+genID, nil, &it)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "beta", it.Value)
	resp = do(t, "GET", base+"/items/missing", nil, &eb)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, cfg1.Name, resp.Header.Get(HeaderNode))
	var list struct{ Items []Item }
	do(t, "GET", base+"/items?limit=1", nil, &list)
	assert.Len(t, list.Items, 1)
	do(t, "GET", base+"/items", nil, &list)
	assert.Len(t, list.Items, 2)
	var slow map[string]int
	resp = do(t, "GET", base+"/slow?ms=20", nil, &slow)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 2, slow["items"])

	// The processing loop counts.
	require.Eventually(t, func() bool { return stat(t, cfg1, statTicks) >= 2 }, 5*time.Second, 25*time.Millisecond)
	require.Eventually(t, func() bool { return stat(t, cfg1, statItemsCount) == 2 }, 5*time.Second, 25*time.Millisecond)

	// Read-only: clean refusals, reads still served, processing paused.
	var ro map[string]bool
	resp = admin(t, n, "POST", "/admin/read-only", map[string]bool{"enabled": true}, &ro)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, map[string]bool{"read_only": true}, ro)
	admin(t, n, "GET", "/admin/read-only", nil, &ro)
	assert.True(t, ro["read_only"])
	resp = do(t, "POST", base+"/items", map[string]string{"value": "refused"}, &eb)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get(HeaderReadOnly))
	assert.Equal(t, ErrorBody{Error: "read-only", Detail: "node is in read-only mode for an upgrade"}, eb)
	resp = do(t, "GET", base+"/items/a", nil, &it)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	do(t, "GET", base+"/healthz", nil, &h)
	assert.True(t, h.ReadOnly)
	ticks := stat(t, cfg1, statTicks)
	time.Sleep(300 * time.Millisecond) // six intervals
	assert.Equal(t, ticks, stat(t, cfg1, statTicks), "processing must not write while read-only")
	require.NoError(t, n.stop(t))

	// Migrate the database and the data folder to version 2; twice is refused.
	cfg2 := *cfg1
	cfg2.Version = Version2
	res, err := Migrate(ctx, &cfg2)
	require.NoError(t, err)
	assert.Equal(t, &MigrateResult{From: 1, To: 2, Database: true, DataDir: true, ItemsUpdated: 2}, res)
	_, err = Migrate(ctx, &cfg2)
	require.ErrorIs(t, err, ErrAlreadyMigrated)
	assert.EqualError(t, err, "already migrated to version 2")
	assert.Equal(t, ExitAlreadyMigrated, ExitCode(err))
	v, err := os.ReadFile(filepath.Join(cfg2.DataDir, VersionFile))
	require.NoError(t, err)
	assert.Equal(t, "2\n", string(v))

	// A version-1 node refuses the migrated database (fresh data folder, so
	// the database check is what stops it).
	cfgOld := *cfg1
	cfgOld.DataDir = filepath.Join(t.TempDir(), "old")
	err = startNodeErr(t, &cfgOld)
	require.ErrorIs(t, err, ErrVersionMismatch)
	assert.Contains(t, err.Error(), "database is at schema 2, this node runs version 1")

	// Version 2 serves the old items with checksums and writes new ones.
	n2 := startNode(t, &cfg2)
	resp = do(t, "GET", n2.URL()+"/items/a", nil, &it)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, Item{ID: "a", Value: "alpha", Checksum: checksum("alpha")}, it)
	assert.Equal(t, "2", resp.Header.Get(HeaderVersion))
	resp = do(t, "POST", n2.URL()+"/items", map[string]string{"id": "c", "value": "gamma"}, &created)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	do(t, "GET", n2.URL()+"/items/c", nil, &it)
	assert.Equal(t, checksum("gamma"), it.Checksum)
	require.Eventually(t, func() bool { return jobRuns(t, &cfg2) >= 2 }, 5*time.Second, 25*time.Millisecond)
	require.NoError(t, n2.stop(t))
}

func jobRuns(t *testing.T, cfg *Config) int64 {
	t.Helper()
	db, err := OpenDB(context.Background(), cfg)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	var v int64
	require.NoError(t, db.QueryRow(dialect(cfg.DBDriver).q("SELECT runs FROM jobs WHERE name = ?"), jobChecksum).Scan(&v))
	return v
}
