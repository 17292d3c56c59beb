package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// The node's own process can write its data folder: a link it plants there
// must not lead touch (run as root) out of it.
func TestTouchFollowsNoLinkOutOfTheDataFolder(t *testing.T) {
	nodes, _, dir := pool(t, "1")
	p := provider(t, nodes)
	data := filepath.Join(dir, "node-1", "data")
	outside := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(outside, []byte("keep"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(data, "marker")))
	require.NoError(t, os.Symlink(filepath.Dir(outside), filepath.Join(data, "sub")))

	for _, rel := range []string{"marker", "sub/new-file"} {
		r := call(p, "touch", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal(rel)})
		require.True(t, r.Diagnostics.HasErrors(), rel)
		msg := r.Diagnostics.Err().Error()
		assert.True(t, strings.Contains(msg, "symbolic link") || strings.Contains(msg, "escapes"), "%s: %s", rel, msg)
	}
	_, err := os.Stat(filepath.Join(filepath.Dir(outside), "new-file"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing created outside")
	fi, err := os.Stat(outside)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// Inside, it works, folders included.
	ok(t, call(p, "touch", map[string]cty.Value{"node": node("node-1"), "path": cty.StringVal("a/b/marker")}))
	assert.FileExists(t, filepath.Join(data, "a", "b", "marker"))
}

// backup_data replaces what `to` names: never /, the data folder or what
// holds it, nor a folder that is not a backup upshift made; with a backup
// root declared, nothing outside it. Backups are private.
func TestBackupDataTargets(t *testing.T) {
	nodes, _, dir := pool(t, "1")
	p := provider(t, nodes)
	data := filepath.Join(dir, "node-1", "data")
	require.NoError(t, os.WriteFile(filepath.Join(data, "db"), []byte("rows"), 0o644))
	precious := filepath.Join(t.TempDir(), "precious")
	require.NoError(t, os.MkdirAll(precious, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(precious, "keep"), []byte("x"), 0o644))

	for to, why := range map[string]string{
		"/":                      "cannot be /",
		data:                     "data folder itself",
		filepath.Dir(data):       "holds the data folder",
		filepath.Join(data, "b"): "inside the data folder",
		precious:                 "not a backup upshift made",
	} {
		r := call(p, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(to)})
		require.True(t, r.Diagnostics.HasErrors(), to)
		assert.Contains(t, r.Diagnostics.Err().Error(), why, to)
	}
	assert.FileExists(t, filepath.Join(precious, "keep"))
	assert.FileExists(t, filepath.Join(data, "db"))

	dest := filepath.Join(t.TempDir(), "backups", "run-1", "data")
	ok(t, call(p, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(dest)}))
	ok(t, call(p, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(dest)})) // its own backup is replaced
	assert.FileExists(t, filepath.Join(dest, fsutil.BackupMarker))
	for p, want := range map[string]os.FileMode{dest: 0o700, filepath.Dir(dest): 0o700, filepath.Join(dest, "db"): 0o600} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), p)
	}

	// A declared root: nothing outside it.
	root := t.TempDir()
	pr := sdktestProviderWith(t, nodes, root)
	r := call(pr, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(filepath.Join(t.TempDir(), "elsewhere"))})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "not inside the backup root")
	ok(t, call(pr, "backup_data", map[string]cty.Value{"node": node("node-1"), "to": cty.StringVal(filepath.Join(root, "b1"))}))
}

// exec commands and node processes get a minimal environment: none of the
// plugin's own (UPSHIFT_VAR_* secrets), only what the step gives them.
func TestChildrenGetNoSecretFromTheEnvironment(t *testing.T) {
	t.Setenv("UPSHIFT_VAR_db_password", "hunter2-from-env")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	nodes, _, _ := pool(t, "1")
	p := provider(t, nodes)
	res := ok(t, call(p, "exec", map[string]cty.Value{"node": node("node-1"),
		"command": cty.ListVal([]cty.Value{cty.StringVal("env")}),
		"env":     cty.MapVal(map[string]cty.Value{"GIVEN": cty.StringVal("yes")})}))
	out := res.GetAttr("stdout").AsString()
	assert.NotContains(t, out, "hunter2-from-env")
	assert.NotContains(t, out, "aws-secret")
	assert.Contains(t, out, "GIVEN=yes")
	assert.Contains(t, out, "PATH=")

	// The node's process too.
	ok(t, call(p, "start", map[string]cty.Value{"node": node("node-1")}))
	pid := strings.TrimSpace(readPid(t, nodes))
	env, err := os.ReadFile("/proc/" + pid + "/environ")
	require.NoError(t, err)
	assert.NotContains(t, string(env), "hunter2-from-env")
	assert.NotContains(t, string(env), "UPSHIFT_VAR_")
}

func readPid(t *testing.T, nodes cty.Value) string {
	b, err := os.ReadFile(nodes.Index(cty.NumberIntVal(0)).GetAttr("pid_file").AsString())
	require.NoError(t, err)
	return string(b)
}

func sdktestProviderWith(t *testing.T, nodes cty.Value, backupRoot string) plugins.Provider {
	p := sdktest.Provider(t, newPlugin())
	cfg := cty.ObjectVal(map[string]cty.Value{"start_timeout": cty.StringVal("20s"), "stop_timeout": cty.StringVal("10s"), "backup_root": cty.StringVal(backupRoot)})
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: nodes})
	require.False(t, d.HasErrors(), d.Err())
	return p
}

// A failing command that prints its environment does not put a password
// from it in the step's error (terminal, journal).
func TestExecErrorHidesEnvValues(t *testing.T) {
	nodes, _, _ := pool(t, "1")
	p := provider(t, nodes)
	r := call(p, "exec", map[string]cty.Value{"node": node("node-1"),
		"shell": cty.StringVal(`echo "login failed with $PW" >&2; exit 1`),
		"env":   cty.MapVal(map[string]cty.Value{"PW": cty.StringVal("hunter2-secret")})})
	require.True(t, r.Diagnostics.HasErrors())
	assert.NotContains(t, r.Diagnostics.Err().Error(), "hunter2-secret")
	assert.Contains(t, r.Diagnostics.Err().Error(), "login failed with (hidden)")
}
