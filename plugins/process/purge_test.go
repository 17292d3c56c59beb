package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// manifest asks a node's GET /manifest: the version that rendered it and
// whether it came from the generated folder.
func manifest(t *testing.T, addr string) (version, how string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/manifest")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m struct{ Version string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return m.Version, resp.Header.Get("X-Platform-Generated")
}

// TestPurgeGeneratedAgainstPlatformd: platformd renders its manifest into
// data/generated; after an upgrade without a purge it still serves
// version 1's; purge_generated (node stopped) empties the folder, and the
// node renders version 2's.
func TestPurgeGeneratedAgainstPlatformd(t *testing.T) {
	nodes, addrs, dir := pool(t, "1")
	p := provider(t, nodes)
	n1 := func(extra map[string]cty.Value) map[string]cty.Value {
		m := map[string]cty.Value{"node": node("node-1")}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	data := filepath.Join(dir, "node-1", "data")
	cfg := filepath.Join(dir, "node-1", "config.json")
	ok(t, call(p, "start", n1(nil)))
	ok(t, call(p, "wait_healthy", n1(map[string]cty.Value{"timeout": cty.StringVal("20s")})))
	v, how := manifest(t, addrs[0])
	assert.Equal(t, "1", v)
	assert.Equal(t, "rendered", how)
	require.FileExists(t, filepath.Join(data, "generated", "manifest.json"))

	r := call(p, "purge_generated", n1(nil))
	require.True(t, r.Diagnostics.HasErrors(), "a running node is not purged")
	assert.Contains(t, r.Diagnostics.Err().Error(), "node node-1: it is running")
	require.FileExists(t, filepath.Join(data, "generated", "manifest.json"))

	// The upgrade, as the playbook does it, but without the purge.
	ok(t, call(p, "stop", n1(nil)))
	ok(t, call(p, "set_config", n1(map[string]cty.Value{"key": cty.StringVal("version"), "value": cty.StringVal("2")})))
	ok(t, call(p, "exec", n1(map[string]cty.Value{"command": cty.ListVal([]cty.Value{cty.StringVal(platformd), cty.StringVal("migrate"), cty.StringVal("--config"), cty.StringVal(cfg)})})))
	ok(t, call(p, "start", n1(nil)))
	ok(t, call(p, "wait_healthy", n1(map[string]cty.Value{"timeout": cty.StringVal("20s"), "version": cty.StringVal("2")})))
	v, how = manifest(t, addrs[0])
	assert.Equal(t, "1", v, "without a purge, version 2 serves version 1's generated file")
	assert.Equal(t, "cached", how)

	ok(t, call(p, "stop", n1(nil)))
	require.NoError(t, os.MkdirAll(filepath.Join(data, "generated", "css"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(data, "generated", "css", "app.css"), []byte("x"), 0o644))
	res := ok(t, call(p, "purge_generated", n1(nil)))
	assert.Equal(t, filepath.Join(data, "generated"), res.GetAttr("path").AsString())
	assert.True(t, res.GetAttr("existed").True())
	removed, _ := res.GetAttr("removed").AsBigFloat().Int64()
	assert.Equal(t, int64(2), removed, "manifest.json and css/")
	entries, err := os.ReadDir(filepath.Join(data, "generated"))
	require.NoError(t, err)
	assert.Empty(t, entries, "the folder stays, empty")
	assert.FileExists(t, filepath.Join(data, "VERSION"), "nothing else of the data folder is touched")
	res = ok(t, call(p, "purge_generated", n1(nil)))
	removed, _ = res.GetAttr("removed").AsBigFloat().Int64()
	assert.Zero(t, removed, "idempotent")

	ok(t, call(p, "start", n1(nil)))
	ok(t, call(p, "wait_healthy", n1(map[string]cty.Value{"timeout": cty.StringVal("20s"), "version": cty.StringVal("2")})))
	v, how = manifest(t, addrs[0])
	assert.Equal(t, "2", v)
	assert.Equal(t, "rendered", how)
}

// TestPurgeGeneratedRefusesLinksAndEscapes: a path that leaves the data
// folder, or a generated folder (or a folder on the way) that is a link,
// is refused, and what the link points to is left; a link inside the
// folder is removed, not followed.
func TestPurgeGeneratedRefusesLinksAndEscapes(t *testing.T) {
	nodes, _, dir := pool(t, "1")
	p := provider(t, nodes)
	data := filepath.Join(dir, "node-1", "data")
	victim := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(victim, "keep"), []byte("keep"), 0o600))
	purge := func(path string) error {
		args := map[string]cty.Value{"node": node("node-1")}
		if path != "" {
			args["path"] = cty.StringVal(path)
		}
		return call(p, "purge_generated", args).Diagnostics.Err()
	}

	for _, bad := range []string{"..", "../..", "/etc", ".", "a/../../x"} {
		err := purge(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "path", bad)
	}
	require.NoError(t, os.Symlink(victim, filepath.Join(data, "generated")))
	err := purge("")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symbolic link")
	require.NoError(t, os.Remove(filepath.Join(data, "generated")))
	require.NoError(t, os.Symlink(victim, filepath.Join(data, "cache")))
	err = purge("cache/generated")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "symbolic link"), err.Error())
	require.NoError(t, os.WriteFile(filepath.Join(data, "plain"), nil, 0o644))
	err = purge("plain")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a folder")

	require.NoError(t, os.MkdirAll(filepath.Join(data, "generated"), 0o755))
	require.NoError(t, os.Symlink(victim, filepath.Join(data, "generated", "link-to-dir")))
	require.NoError(t, os.Symlink(filepath.Join(victim, "keep"), filepath.Join(data, "generated", "link-to-file")))
	require.NoError(t, purge(""))
	entries, err := os.ReadDir(filepath.Join(data, "generated"))
	require.NoError(t, err)
	assert.Empty(t, entries)
	b, err := os.ReadFile(filepath.Join(victim, "keep"))
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b), "what the links pointed to is left")

	require.NoError(t, os.RemoveAll(filepath.Join(data, "generated")))
	res := call(p, "purge_generated", map[string]cty.Value{"node": node("node-1")})
	require.NoError(t, res.Diagnostics.Err())
	assert.False(t, res.Result.GetAttr("existed").True(), "a missing folder is nothing to purge")
}
