package host_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
)

func writeExe(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, host.BinaryName("x"))
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), mode))
	return p
}

func TestFind(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	root := t.TempDir()
	first, second, third := filepath.Join(root, "1"), filepath.Join(root, "2"), filepath.Join(root, "3")
	require.NoError(t, os.MkdirAll(first, 0o755))
	notExe := writeExe(t, second, 0o644)
	want := writeExe(t, third, 0o755)

	got, err := host.Find("x", []string{first, second, third})
	require.NoError(t, err)
	assert.Equal(t, want, got, "the first folder holding an executable wins; a non-executable file is skipped")

	// An entry may be the binary itself.
	got, err = host.Find("x", []string{want, first})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Not found: the error says where it looked and why each did not do.
	_, err = host.Find("x", []string{first, second, filepath.Join(root, "nope")})
	require.Error(t, err)
	assert.Equal(t, "plugin x: no upshift-plugin-x found; looked in:\n"+
		"  - "+filepath.Join(first, "upshift-plugin-x")+" (not found)\n"+
		"  - "+notExe+" (not an executable file)\n"+
		"  - "+filepath.Join(root, "nope")+" (not found)\n"+
		"  - PATH", err.Error())

	// PATH comes last.
	onPath := t.TempDir()
	pathBin := writeExe(t, onPath, 0o755)
	t.Setenv("PATH", onPath)
	got, err = host.Find("x", []string{first})
	require.NoError(t, err)
	assert.Equal(t, pathBin, got)
	got, err = host.Find("x", []string{third})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = host.Find("../x", nil)
	assert.ErrorContains(t, err, "invalid plugin name")
}

func TestSearchPath(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	require.NoError(t, err)

	dirs := host.SearchPath("", "/play")
	assert.Equal(t, []string{"/play/.upshift/plugins", filepath.Dir(exe), "bin"}, dirs)

	dirs = host.SearchPath("./tools/upshift-plugin-x", "/play")
	assert.Equal(t, []string{"/play/tools/upshift-plugin-x", "/play/.upshift/plugins", filepath.Dir(exe), "bin"}, dirs)

	dirs = host.SearchPath("/opt/p", "/play")
	assert.Equal(t, "/opt/p", dirs[0])

	// A bare name is not a path: the usual places apply.
	dirs = host.SearchPath("upshift-plugin-x", "/play")
	assert.Equal(t, "/play/.upshift/plugins", dirs[0])
}
