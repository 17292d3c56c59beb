package platform

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestManifestIsCachedAcrossAnUpgradeUntilPurged: the manifest is rendered
// once into the generated folder and served from it; migrate leaves the
// folder alone, so a version-2 node serves the version-1 manifest until
// the folder is emptied, then renders its own.
func TestManifestIsCachedAcrossAnUpgradeUntilPurged(t *testing.T) {
	cfg1 := newConfig(t, sqliteDB(t), Version1, false)
	n1 := startNode(t, cfg1)
	var m Manifest
	resp := do(t, http.MethodGet, n1.URL()+"/manifest", nil, &m)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "rendered", resp.Header.Get(HeaderGenerated))
	assert.Equal(t, "1", m.Version)
	first := m.RenderedAt
	resp = do(t, http.MethodGet, n1.URL()+"/manifest", nil, &m)
	assert.Equal(t, "cached", resp.Header.Get(HeaderGenerated))
	assert.Equal(t, first, m.RenderedAt, "served from the generated folder")
	assert.FileExists(t, cfg1.GeneratedPath(ManifestFile))
	require.NoError(t, n1.stop(t))

	cfg2 := *cfg1
	cfg2.Version = Version2
	_, err := Migrate(context.Background(), &cfg2)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg2.MarkerPath(), nil, 0o644))
	n2 := startNode(t, &cfg2)
	resp = do(t, http.MethodGet, n2.URL()+"/manifest", nil, &m)
	assert.Equal(t, "cached", resp.Header.Get(HeaderGenerated))
	assert.Equal(t, "1", m.Version, "a stale generated file is served as it is")
	require.NoError(t, n2.stop(t))

	require.NoError(t, os.RemoveAll(cfg2.GeneratedPath("")))
	n2 = startNode(t, &cfg2)
	resp = do(t, http.MethodGet, n2.URL()+"/manifest", nil, &m)
	assert.Equal(t, "rendered", resp.Header.Get(HeaderGenerated))
	assert.Equal(t, "2", m.Version)
	assert.Contains(t, m.Routes, "item checksums")
}

// TestSessionCookie: a request without the session cookie gets one; a
// request with it keeps it.
func TestSessionCookie(t *testing.T) {
	n := startNode(t, newConfig(t, sqliteDB(t), Version1, false))
	resp := do(t, http.MethodGet, n.URL()+"/version", nil, nil)
	var got *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			got = c
		}
	}
	require.NotNil(t, got, "a session cookie is set")
	assert.Len(t, got.Value, 32)
	resp = doWith(t, http.MethodGet, n.URL()+"/version", nil, nil, map[string]string{"Cookie": SessionCookie + "=" + got.Value})
	assert.Empty(t, resp.Cookies(), "a session keeps its cookie")
}
