package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// configKeys reads a JSON config file as key -> compact JSON text.
func configKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	out := map[string]string{}
	for k, v := range m {
		var c bytes.Buffer
		require.NoError(t, json.Compact(&c, v))
		out[k] = c.String()
	}
	return out
}

// sshPool is one platformd node over the tests' sshd, with the plugin
// configured for it; it is stopped when the test ends.
func sshPool(t *testing.T) (p plugins.Provider, ns cty.Value, addr, cfgPath string) {
	t.Helper()
	srv := sshd.Start(t)
	ns, addr, cfgPath = nodes(t, srv)
	p = sdktest.Provider(t, newPlugin())
	// A generous command timeout: these tests run beside others on a
	// loaded machine, and a slow ssh command is not what they test.
	cfg := config(srv, srv.KnownHosts, false).AsValueMap()
	cfg["timeout"] = cty.StringVal("30s")
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(cfg), Nodes: ns}).HasErrors())
	t.Cleanup(func() {
		call(p, "stop", map[string]cty.Value{"node": cty.StringVal("node-1"), "timeout": cty.StringVal("5s")})
	})
	return p, ns, addr, cfgPath
}

// TestRestoreConfigOverSSH: set_config reports the value it replaced as the
// file held it, restore_config puts exactly that back over SFTP (a number
// stays a number, a key that was not there is removed), keeping the file's
// mode and owner; both idempotent.
func TestRestoreConfigOverSSH(t *testing.T) {
	p, _, _, cfgPath := sshPool(t)
	n := cty.StringVal("node-1")

	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	cfg["workers"] = 4
	cfg["limits"] = map[string]any{"rps": 250.5, "burst": []int{1, 2}}
	b, _ = json.MarshalIndent(cfg, "", "\t")
	require.NoError(t, os.WriteFile(cfgPath, b, 0o640))
	require.NoError(t, os.Chmod(cfgPath, 0o640))
	require.NoError(t, os.Chown(cfgPath, 65534, 65534))
	original := configKeys(t, cfgPath)

	restore := func(key string, set cty.Value) cty.Value {
		t.Helper()
		return ok(t, call(p, "restore_config", map[string]cty.Value{"node": n, "key": cty.StringVal(key), "existed": set.GetAttr("existed"), "previous": set.GetAttr("previous")}))
	}
	// limits first: its previous text is the operator's layout (tabs),
	// which the file no longer has once restore_config rewrote it.
	for _, kv := range [][2]string{{"limits", `{"burst":[1,2],"rps":250.5}`}, {"workers", "4"}} {
		key, previous := kv[0], kv[1]
		set := ok(t, call(p, "set_config", map[string]cty.Value{"node": n, "key": cty.StringVal(key), "value": cty.StringVal("changed")}))
		assert.True(t, set.GetAttr("changed").True(), key)
		assert.True(t, set.GetAttr("existed").True(), key)
		var c bytes.Buffer
		require.NoError(t, json.Compact(&c, []byte(set.GetAttr("previous").AsString())))
		assert.Equal(t, previous, c.String(), "%s: previous is the JSON text the file held", key)
		assert.Equal(t, `"changed"`, configKeys(t, cfgPath)[key])

		assert.True(t, restore(key, set).GetAttr("changed").True(), key)
		assert.Equal(t, original, configKeys(t, cfgPath), "%s: every key as it was, each of its own JSON type", key)
		assert.False(t, restore(key, set).GetAttr("changed").True(), "%s: twice changes nothing", key)
	}

	set := ok(t, call(p, "set_config", map[string]cty.Value{"node": n, "key": cty.StringVal("feature_x"), "value": cty.StringVal("on")}))
	assert.False(t, set.GetAttr("existed").True())
	assert.True(t, set.GetAttr("previous").IsNull())
	assert.True(t, restore("feature_x", set).GetAttr("changed").True())
	assert.Equal(t, original, configKeys(t, cfgPath), "the new key is gone")
	assert.False(t, restore("feature_x", set).GetAttr("changed").True())

	st, err := os.Stat(cfgPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "mode kept")
	assert.Equal(t, uint32(65534), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	entries, err := os.ReadDir(filepath.Dir(cfgPath))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), "upshift", "no temporary file or folder left")
	}

	r := call(p, "restore_config", map[string]cty.Value{"node": n, "key": cty.StringVal("workers")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "existed", r.Diagnostics[0].Attribute)
}

// TestTouchAndRemoveOverSSH: touch says whether it made the marker; remove
// takes away only a regular file touch made, and goes through no link.
func TestTouchAndRemoveOverSSH(t *testing.T) {
	p, ns, _, _ := sshPool(t)
	n := cty.StringVal("node-1")
	data := ns.Index(cty.NumberIntVal(0)).GetAttr("data_dir").AsString()
	touch := func(path string) plugins.InvokeResponse {
		return call(p, "touch", map[string]cty.Value{"node": n, "path": cty.StringVal(path)})
	}
	remove := func(path string, created cty.Value) plugins.InvokeResponse {
		return call(p, "remove", map[string]cty.Value{"node": n, "path": cty.StringVal(path), "created": created})
	}

	res := ok(t, touch("rolling-upgrade"))
	marker := filepath.Join(data, "rolling-upgrade")
	assert.Equal(t, marker, res.GetAttr("path").AsString())
	assert.True(t, res.GetAttr("created").True())
	assert.FileExists(t, marker)
	assert.False(t, ok(t, touch("rolling-upgrade")).GetAttr("created").True(), "there already")
	assert.True(t, ok(t, remove("rolling-upgrade", res.GetAttr("created"))).GetAttr("removed").True())
	assert.NoFileExists(t, marker)
	assert.False(t, ok(t, remove("rolling-upgrade", cty.True)).GetAttr("removed").True(), "a missing file is fine")

	keep := filepath.Join(data, "keep")
	require.NoError(t, os.WriteFile(keep, []byte("operator's"), 0o600))
	res = ok(t, touch("keep"))
	assert.False(t, res.GetAttr("created").True())
	assert.False(t, ok(t, remove("keep", res.GetAttr("created"))).GetAttr("removed").True())
	got, err := os.ReadFile(keep)
	require.NoError(t, err)
	assert.Equal(t, "operator's", string(got))

	outside := t.TempDir()
	precious := filepath.Join(outside, "precious")
	require.NoError(t, os.WriteFile(precious, []byte("x"), 0o600))
	require.NoError(t, os.Symlink(precious, filepath.Join(data, "link")))
	require.NoError(t, os.Symlink(outside, filepath.Join(data, "escape")))
	require.NoError(t, os.Mkdir(filepath.Join(data, "folder"), 0o755))
	for _, tc := range []struct{ path, want string }{
		{"link", "node node-1: " + filepath.Join(data, "link") + " is a symbolic link, not a file touch made: left as it is"},
		{"folder", "node node-1: " + filepath.Join(data, "folder") + " is a folder, not a file touch made: left as it is"},
		{"escape/precious", "node node-1: " + filepath.Join(data, "escape") + " is a symbolic link, not a folder: refusing to go through it"},
	} {
		t.Run("remove "+tc.path, func(t *testing.T) {
			r := remove(tc.path, cty.True)
			require.True(t, r.Diagnostics.HasErrors())
			assert.Equal(t, tc.want, r.Diagnostics[0].Detail)
		})
	}
	assert.FileExists(t, precious, "nothing outside the data folder was removed")
	fi, err := os.Lstat(filepath.Join(data, "link"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeSymlink, fi.Mode().Type(), "the link is left")
	assert.DirExists(t, filepath.Join(data, "folder"))

	r := touch("escape/new-marker")
	require.True(t, r.Diagnostics.HasErrors(), "touch goes through no link either")
	assert.NoFileExists(t, filepath.Join(outside, "new-marker"))
	r = remove("../config.json", cty.True)
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "path", r.Diagnostics[0].Attribute)
}

// TestReadWriteOverSSH: read_write undoes read_only on a real platformd
// started over SSH.
func TestReadWriteOverSSH(t *testing.T) {
	p, _, addr, _ := sshPool(t)
	n := cty.StringVal("node-1")
	ok(t, call(p, "start", map[string]cty.Value{"node": n}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("20s")}))
	post := func() int {
		resp, err := http.Post("http://"+addr+"/items", "application/json", strings.NewReader(`{"value":"x"}`))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Less(t, post(), 300)
	ok(t, call(p, "read_only", map[string]cty.Value{"node": n, "enabled": cty.True}))
	assert.Equal(t, http.StatusServiceUnavailable, post())
	res := ok(t, call(p, "read_write", map[string]cty.Value{"node": n}))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("node-1"), "enabled": cty.False})), "%#v", res)
	assert.Less(t, post(), 300, "writes are taken again")
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": n, "timeout": cty.StringVal("5s"), "writable": cty.True}))
}
