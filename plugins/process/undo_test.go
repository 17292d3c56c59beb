package main

import (
	"bytes"
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

	"github.com/upshift-dev/upshift/plugins"
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

// compact is JSON text without its spaces.
func compact(t *testing.T, s string) string {
	t.Helper()
	var c bytes.Buffer
	require.NoError(t, json.Compact(&c, []byte(s)))
	return c.String()
}

func setConfig(t *testing.T, p plugins.Provider, key, value string) cty.Value {
	t.Helper()
	return ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal(key), "value": cty.StringVal(value)}))
}

// restore calls restore_config with set_config's result.
func restore(p plugins.Provider, key string, set cty.Value) plugins.InvokeResponse {
	return call(p, "restore_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal(key), "existed": set.GetAttr("existed"), "previous": set.GetAttr("previous")})
}

// TestRestoreConfigRoundTrip: set_config reports the value it replaced as
// the file held it, and restore_config puts exactly that back: a number
// stays a number, an object stays that object, a key that was not there
// is removed; the file keeps its mode and owner; both are idempotent.
func TestRestoreConfigRoundTrip(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	p := provider(t, nodes)
	cfgPath := nodes.Index(cty.NumberIntVal(0)).GetAttr("config_file").AsString()

	// The node's config as an operator wrote it: a number, an object, a
	// string with a credential in it.
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	cfg["workers"] = 4
	cfg["limits"] = map[string]any{"rps": 250.5, "burst": []int{1, 2}}
	cfg["db.dsn"] = "postgres://app:s3cret@db/app_a?sslmode=disable"
	b, _ = json.MarshalIndent(cfg, "", "\t")
	require.NoError(t, os.WriteFile(cfgPath, b, 0o640))
	require.NoError(t, os.Chmod(cfgPath, 0o640))
	owner := os.Getuid()
	if owner == 0 {
		owner = 65534
		require.NoError(t, os.Chown(cfgPath, owner, owner))
	}
	original := configKeys(t, cfgPath)

	for _, tc := range []struct {
		key, value, previous string
	}{
		// limits first: its previous text is the operator's layout (tabs),
		// which the file no longer has once restore_config rewrote it.
		{"limits", "none", `{"burst":[1,2],"rps":250.5}`},
		{"workers", "8", "4"},
		{"db.dsn", "postgres://app:s3cret@db/app_b?sslmode=disable", `"postgres://app:s3cret@db/app_a?sslmode=disable"`},
		{"version", "1", ""}, // the same value: nothing changes, nothing to undo
	} {
		t.Run(tc.key, func(t *testing.T) {
			set := setConfig(t, p, tc.key, tc.value)
			assert.True(t, set.GetAttr("existed").True())
			assert.Equal(t, compact(t, original[tc.key]), compact(t, set.GetAttr("previous").AsString()), "previous is the JSON text the file held")
			if tc.previous == "" {
				assert.False(t, set.GetAttr("changed").True())
			} else {
				assert.True(t, set.GetAttr("changed").True())
				assert.Equal(t, tc.previous, compact(t, set.GetAttr("previous").AsString()))
				v, _ := json.Marshal(tc.value)
				assert.Equal(t, string(v), configKeys(t, cfgPath)[tc.key], "set_config wrote the new value as a string")
			}

			res := ok(t, restore(p, tc.key, set))
			assert.Equal(t, tc.previous != "", res.GetAttr("changed").True())
			assert.Equal(t, original, configKeys(t, cfgPath), "every key as it was, each of its own JSON type")
			res = ok(t, restore(p, tc.key, set))
			assert.False(t, res.GetAttr("changed").True(), "restore_config twice changes nothing")
		})
	}

	// A key that was not there: reported so, and removed again.
	set := setConfig(t, p, "feature_x", "on")
	assert.True(t, set.GetAttr("changed").True())
	assert.False(t, set.GetAttr("existed").True())
	assert.True(t, set.GetAttr("previous").IsNull())
	assert.Equal(t, `"on"`, configKeys(t, cfgPath)["feature_x"])
	res := ok(t, restore(p, "feature_x", set))
	assert.True(t, res.GetAttr("changed").True())
	assert.Equal(t, original, configKeys(t, cfgPath), "the key is gone, the rest as it was")
	res = ok(t, restore(p, "feature_x", set))
	assert.False(t, res.GetAttr("changed").True())

	st, err := os.Stat(cfgPath)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "mode kept")
	assert.Equal(t, uint32(owner), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(cfgPath), ".config.json.upshift-*"))
	assert.Empty(t, leftovers, "no temporary file left")

	// What cannot be put back is refused, naming the argument; the file is
	// not touched.
	before, _ := os.ReadFile(cfgPath)
	r := call(p, "restore_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("workers")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "existed", r.Diagnostics[0].Attribute)
	assert.Contains(t, r.Diagnostics[0].Detail, `the value key "workers" had before set_config is not known, so it cannot be put back: set it by hand`)
	r = call(p, "restore_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("workers"), "existed": cty.True})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "previous", r.Diagnostics[0].Attribute)
	assert.Contains(t, r.Diagnostics[0].Detail, `key "workers" was set before set_config, but its value is not known: set it by hand`)
	r = call(p, "restore_config", map[string]cty.Value{"node": node("node-1"), "key": cty.StringVal("workers"), "existed": cty.True, "previous": cty.StringVal("not json")})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics[0].Detail, `node node-1: the value to put back for "workers" is not JSON`)
	after, _ := os.ReadFile(cfgPath)
	assert.Equal(t, string(before), string(after), "a refused restore_config changed nothing")
}

// TestTouchAndRemove: touch says whether it made the marker; remove takes
// away only a regular file touch made, never a file that was there
// before, a link, a folder, or anything through a link out of the data
// folder.
func TestTouchAndRemove(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	p := provider(t, nodes)
	data := nodes.Index(cty.NumberIntVal(0)).GetAttr("data_dir").AsString()
	touch := func(path string) plugins.InvokeResponse {
		return call(p, "touch", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal(path)})
	}
	remove := func(path string, created cty.Value) plugins.InvokeResponse {
		return call(p, "remove", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal(path), "created": created})
	}

	// A marker touch makes, in a folder it makes: created, then not.
	res := ok(t, touch("upgrade/rolling-upgrade"))
	marker := filepath.Join(data, "upgrade", "rolling-upgrade")
	assert.Equal(t, marker, res.GetAttr("path").AsString())
	assert.True(t, res.GetAttr("created").True())
	assert.FileExists(t, marker)
	again := ok(t, touch("upgrade/rolling-upgrade"))
	assert.False(t, again.GetAttr("created").True(), "there already")

	// Its undo with the first touch's result removes it; twice is fine.
	res = ok(t, remove("upgrade/rolling-upgrade", res.GetAttr("created")))
	assert.True(t, res.GetAttr("removed").True())
	assert.NoFileExists(t, marker)
	res = ok(t, remove("upgrade/rolling-upgrade", cty.True))
	assert.False(t, res.GetAttr("removed").True(), "a missing file is fine")
	assert.DirExists(t, filepath.Join(data, "upgrade"), "only the file goes")

	// A file that was there before touch stays when touch's undo runs.
	keep := filepath.Join(data, "keep")
	require.NoError(t, os.WriteFile(keep, []byte("operator's"), 0o600))
	res = ok(t, touch("keep"))
	assert.False(t, res.GetAttr("created").True())
	res = ok(t, remove("keep", res.GetAttr("created")))
	assert.False(t, res.GetAttr("removed").True())
	got, err := os.ReadFile(keep)
	require.NoError(t, err)
	assert.Equal(t, "operator's", string(got))

	// Outside the data folder: a file a link points at, a folder with a
	// file, and a link to that folder planted in the data folder.
	outside := t.TempDir()
	precious := filepath.Join(outside, "precious")
	require.NoError(t, os.WriteFile(precious, []byte("x"), 0o600))
	require.NoError(t, os.Symlink(precious, filepath.Join(data, "link")))
	require.NoError(t, os.Symlink(outside, filepath.Join(data, "escape")))
	require.NoError(t, os.Mkdir(filepath.Join(data, "folder"), 0o755))

	for _, tc := range []struct{ path, want string }{
		{"link", "node node-1: " + filepath.Join(data, "link") + " is a symbolic link, not a file touch made: left as it is"},
		{"folder", "node node-1: " + filepath.Join(data, "folder") + " is a folder, not a file touch made: left as it is"},
		{"escape/precious", "node node-1: " + filepath.Join(data, "escape", "precious") + ": path escapes from parent"},
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

	// touch does not go out through the link either.
	r := touch("escape/new-marker")
	require.True(t, r.Diagnostics.HasErrors())
	assert.NoFileExists(t, filepath.Join(outside, "new-marker"))

	// Paths that leave the data folder are refused before anything is
	// looked at.
	for _, path := range []string{"../config.json", "/etc/passwd", ""} {
		r := remove(path, cty.True)
		require.True(t, r.Diagnostics.HasErrors(), path)
		assert.Equal(t, "path", r.Diagnostics[0].Attribute, path)
	}
	assert.FileExists(t, nodes.Index(cty.NumberIntVal(0)).GetAttr("config_file").AsString())
}

// TestReadWriteUndoesReadOnly on a real platformd: writes refused while
// read-only, taken again after read_write.
func TestReadWriteUndoesReadOnly(t *testing.T) {
	nodes, addrs, _ := pool(t, "1")
	p := provider(t, nodes)
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("20s")}))
	post := func() (int, string) {
		resp, err := http.Post("http://"+addrs[0]+"/items", "application/json", strings.NewReader(`{"value":"x"}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Upshift-Read-Only")
	}
	code, _ := post()
	require.Less(t, code, 300, "writable to begin with")

	res := ok(t, call(p, "read_only", map[string]cty.Value{"node": node("node-1"), "enabled": cty.True}))
	assert.True(t, res.GetAttr("enabled").True())
	code, ro := post()
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", ro)

	res = ok(t, call(p, "read_write", map[string]cty.Value{"node": node("node-1")}))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("node-1"), "enabled": cty.False})), "%#v", res)
	code, ro = post()
	assert.Less(t, code, 300, "writes are taken again")
	assert.Empty(t, ro)
	ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node("node-1"), "timeout": cty.StringVal("5s"), "writable": cty.True}))
	res = ok(t, call(p, "read_write", map[string]cty.Value{"node": node("node-1")}))
	assert.False(t, res.GetAttr("enabled").True(), "idempotent")

	// A stopped node serves nothing: there is no mode to set, and a run
	// that left it stopped (cut short between its stop and its start) can
	// carry on, in either direction.
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")}))
	ok(t, call(p, "read_write", map[string]cty.Value{"node": node("node-1")}))
	res = ok(t, call(p, "read_only", map[string]cty.Value{"node": node("node-1"), "enabled": cty.True}))
	assert.True(t, res.GetAttr("enabled").True())
}

// A node that runs but whose admin endpoint does not answer is an error
// naming the endpoint: its mode cannot be set, and it takes traffic.
func TestReadOnlyOfARunningNodeThatDoesNotAnswer(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	dead := freeAddr(t)
	n := nodes.Index(cty.NumberIntVal(0)).AsValueMap()
	n["read_only_url"] = cty.StringVal("http://" + dead + "/admin/read-only")
	nodes = cty.TupleVal([]cty.Value{cty.ObjectVal(n)})
	p := provider(t, nodes)
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	r := call(p, "read_only", map[string]cty.Value{"node": node("node-1"), "enabled": cty.True})
	require.True(t, r.Diagnostics.HasErrors())
	assert.True(t, strings.HasPrefix(r.Diagnostics[0].Detail, "node node-1: read-only request to "), r.Diagnostics[0].Detail)
	assert.Contains(t, r.Diagnostics[0].Detail, dead)
	ok(t, call(p, "stop", map[string]cty.Value{"node": node("node-1")}))
}
