package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
)

// noTrustedPlugins leaves the in-process commands no plugin folder with
// anything in it: an empty UPSHIFT_PLUGIN_PATH and HOME, and the test
// binary's own folder, which holds no plugin.
func noTrustedPlugins(t *testing.T) {
	t.Setenv(host.PluginPathEnv, t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_DATA_HOME", "")
}

// TestCheckingRunsNothingFromThePlaybookFolder: a playbook folder that
// ships a plugin binary (in .upshift/plugins, ./bin, a folder on PATH) and
// a lock file pinning it by path and checksum gets nothing run by
// validate, plan or graph, whether the lock file is there or not.
func TestCheckingRunsNothingFromThePlaybookFolder(t *testing.T) {
	noTrustedPlugins(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(`
node_pool "kit" {
  plugin = "testkit"
  nodes  = [{ name = "n1" }]
}

step "start" {
  run = node_pool.kit.start
  with {
    node = "n1"
  }
}
`), 0o644))
	marker := filepath.Join(t.TempDir(), "ran")
	evil := []byte("#!/bin/sh\necho ran >> '" + marker + "'\n")
	for _, d := range []string{".upshift/plugins", "bin", "path"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, d, "upshift-plugin-testkit"), evil, 0o755))
	}
	t.Setenv("PATH", filepath.Join(dir, "path")+":"+os.Getenv("PATH"))
	t.Chdir(dir)

	// No lock file: the kinds' contracts, nothing started.
	for _, cmd := range []string{"validate", "plan", "graph"} {
		code, _, stderr := runCLI(cmd, dir)
		assert.Equal(t, exitOK, code, "%s: %s", cmd, stderr)
	}

	sum := sha256.Sum256(evil)
	lock := "plugin \"testkit\" {\n  version = \"0.1.0\"\n  path    = \".upshift/plugins/upshift-plugin-testkit\"\n  sha256  = \"" + hex.EncodeToString(sum[:]) + "\"\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, host.LockFileName), []byte(lock), 0o644))
	for _, cmd := range []string{"validate", "plan", "graph", "run"} {
		code, _, stderr := runCLI(cmd, dir)
		assert.NotEqual(t, exitOK, code, cmd)
		if cmd != "run" { // run logs to its own log
			assert.Contains(t, stderr, "paths in a lock file are ignored", cmd)
		}
		assert.Contains(t, stderr, "no upshift-plugin-testkit found; looked in:", cmd)
		assert.NotContains(t, stderr, filepath.Join(dir, ".upshift"), "%s looked in the playbook folder", cmd)
	}
	assert.NoFileExists(t, marker, "a binary of the playbook folder ran")
}

// TestMisspeltPluginIsADiagnostic: before init, a plugin nobody provides
// is an error at the resource's plugin attribute, with the name meant.
func TestMisspeltPluginIsADiagnostic(t *testing.T) {
	noTrustedPlugins(t)
	dir, _ := kitPlaybook(t, 1, "")
	main := filepath.Join(dir, "main.hcl")
	src, err := os.ReadFile(main)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(main, []byte(strings.Replace(string(src), `plugin = "testkit"`, `plugin = "testkti"`, 1)), 0o644))
	code, _, stderr := runCLI("validate", dir)
	assert.Equal(t, exitInvalid, code)
	assert.Contains(t, stderr, "main.hcl:3:12: error: Unknown plugin")
	assert.Contains(t, stderr, `plugin = "testkti"`, "the source line is shown")
	assert.Contains(t, stderr, `unknown plugin "testkti"`)
	assert.Contains(t, stderr, `did you mean "testkit"?`)
}

// TestPluginsList: `upshift plugins list` shows the trusted folders in
// order and what each holds, refusing what others could change.
func TestPluginsList(t *testing.T) {
	noTrustedPlugins(t)
	dir := os.Getenv(host.PluginPathEnv)
	good := filepath.Join(dir, "upshift-plugin-good")
	require.NoError(t, os.WriteFile(good, []byte("test"), 0o755))
	open := filepath.Join(dir, "upshift-plugin-open")
	require.NoError(t, os.WriteFile(open, []byte("test"), 0o755))
	require.NoError(t, os.Chmod(open, 0o777))
	code, out, stderr := runCLI("plugins", "list")
	require.Equal(t, exitOK, code, stderr)
	lines := strings.Split(out, "\n")
	assert.Equal(t, dir+" (2)", lines[0], out)
	assert.Equal(t, "  good       sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", lines[1])
	assert.Equal(t, "  open       refused: plugin binary "+open+" is writable by its group and others (mode 0777); run: chmod 0755 "+open, lines[2])
	assert.Contains(t, out, filepath.Join(os.Getenv("HOME"), ".upshift", "plugins")+" (0)")
}
