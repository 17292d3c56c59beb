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

	got, err := host.Find("x", host.BinaryName("x"), []string{first, second, third})
	require.NoError(t, err)
	assert.Equal(t, want, got, "the first folder holding an executable wins; a non-executable file is skipped")

	// An entry may be the binary itself.
	got, err = host.Find("x", host.BinaryName("x"), []string{want, first})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Not found: the error says where it looked and why each did not do.
	_, err = host.Find("x", host.BinaryName("x"), []string{first, second, filepath.Join(root, "nope")})
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
	got, err = host.Find("x", host.BinaryName("x"), []string{first})
	require.NoError(t, err)
	assert.Equal(t, pathBin, got)
	got, err = host.Find("x", host.BinaryName("x"), []string{third})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = host.Find("../x", host.BinaryName("../x"), nil)
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

// TestBareSourceIsTheBinaryName: source = "my-haproxy" names the binary to
// look for, in the same places, instead of upshift-plugin-<name>.
func TestBareSourceIsTheBinaryName(t *testing.T) {
	assert.Equal(t, "my-haproxy", host.BinaryFor("haproxy", "my-haproxy"))
	assert.Equal(t, "upshift-plugin-haproxy", host.BinaryFor("haproxy", ""))
	assert.Equal(t, "upshift-plugin-haproxy", host.BinaryFor("haproxy", "./vendor/bin"), "a path is where to look, not a name")

	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	own := filepath.Join(dir, "my-haproxy")
	require.NoError(t, os.WriteFile(own, []byte("#!/bin/sh\n"), 0o755))
	writeExe(t, dir, 0o755) // upshift-plugin-x beside it must not be picked
	got, err := host.Find("haproxy", host.BinaryFor("haproxy", "my-haproxy"), []string{dir})
	require.NoError(t, err)
	assert.Equal(t, own, got)

	_, err = host.Find("haproxy", "my-haproxy", []string{t.TempDir()})
	assert.ErrorContains(t, err, "no my-haproxy found")
	_, err = host.Find("haproxy", "..", nil)
	assert.ErrorContains(t, err, `invalid binary name ".."`)
}

func TestCheckVersion(t *testing.T) {
	assert.NoError(t, host.CheckVersion("haproxy", "0.3.1", ""))
	assert.NoError(t, host.CheckVersion("haproxy", "0.3.1", ">= 0.3, < 1.0"))
	assert.NoError(t, host.CheckVersion("haproxy", "1.2.7", "~> 1.2"))
	assert.EqualError(t, host.CheckVersion("haproxy", "0.3.1", ">= 1.0"), "plugin haproxy is version 0.3.1, but the playbook requires >= 1.0")
	assert.EqualError(t, host.CheckVersion("haproxy", "dev", "1.0"), `plugin haproxy reports version "dev", which is not a version, so it cannot meet "1.0"`)
	assert.ErrorContains(t, host.CheckVersion("haproxy", "1.0", "soon"), `invalid version constraint "soon"`)
}
