package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// TestPurgeGeneratedOverSSH: a platformd started over SSH renders its
// manifest into data/generated; purge_generated refuses while it runs,
// then empties the folder over SFTP (a link inside removed, not followed),
// refuses a generated folder that is a link, and a missing one is nothing
// to purge.
func TestPurgeGeneratedOverSSH(t *testing.T) {
	p, ns, addr, _ := sshPool(t)
	n := cty.StringVal("node-1")
	data := ns.Index(cty.NumberIntVal(0)).GetAttr("data_dir").AsString()
	gen := filepath.Join(data, "generated")
	purge := func() (cty.Value, error) {
		r := call(p, "purge_generated", map[string]cty.Value{"node": n})
		return r.Result, r.Diagnostics.Err()
	}

	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	resp, err := http.Get("http://" + addr + "/manifest")
	require.NoError(t, err)
	var m struct{ Version string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	resp.Body.Close()
	assert.Equal(t, "1", m.Version)
	require.FileExists(t, filepath.Join(gen, "manifest.json"))
	_, err = purge()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node node-1: it is running")

	ok(t, call(p, "stop", map[string]cty.Value{"node": n}))
	victim := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(victim, "keep"), []byte("keep"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(gen, "assets", "css"), 0o755))
	require.NoError(t, os.Symlink(victim, filepath.Join(gen, "assets", "link")))
	res, err := purge()
	require.NoError(t, err)
	assert.Equal(t, gen, res.GetAttr("path").AsString())
	removed, _ := res.GetAttr("removed").AsBigFloat().Int64()
	assert.Equal(t, int64(2), removed, "manifest.json and assets/")
	entries, err := os.ReadDir(gen)
	require.NoError(t, err)
	assert.Empty(t, entries)
	assert.FileExists(t, filepath.Join(victim, "keep"), "the link was removed, not followed")

	require.NoError(t, os.Remove(gen))
	res, err = purge()
	require.NoError(t, err)
	assert.False(t, res.GetAttr("existed").True())
	require.NoError(t, os.Symlink(victim, gen))
	_, err = purge()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symbolic link")
	assert.FileExists(t, filepath.Join(victim, "keep"))
	r := call(p, "purge_generated", map[string]cty.Value{"node": n, "path": cty.StringVal("../x")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "path", r.Diagnostics[0].Attribute)
}
