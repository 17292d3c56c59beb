package host_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	require.NoError(t, os.Chmod(p, mode))
	return p
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	first, second, third := filepath.Join(root, "1"), filepath.Join(root, "2"), filepath.Join(root, "3")
	require.NoError(t, os.MkdirAll(first, 0o755))
	notExe := writeExe(t, second, 0o644)
	want := writeExe(t, third, 0o755)

	got, err := host.Find("x", host.BinaryName("x"), []string{first, second, third})
	require.NoError(t, err)
	assert.Equal(t, want, got, "the first folder holding an executable wins; a non-executable file is skipped")

	// Not found: the error says where it looked and why each did not do.
	_, err = host.Find("x", host.BinaryName("x"), []string{first, second, filepath.Join(root, "nope")})
	require.Error(t, err)
	assert.Equal(t, "plugin x: no upshift-plugin-x found; looked in:\n"+
		"  - "+filepath.Join(first, "upshift-plugin-x")+" (not found)\n"+
		"  - "+notExe+" (not an executable file)\n"+
		"  - "+filepath.Join(root, "nope", "upshift-plugin-x")+" (not found)\n"+
		"plugins are found only in these folders; install it in one, or add its folder to $UPSHIFT_PLUGIN_PATH", err.Error())
	var nf *host.NotFoundError
	assert.ErrorAs(t, err, &nf)

	// PATH is not a plugin folder.
	onPath := t.TempDir()
	writeExe(t, onPath, 0o755)
	t.Setenv("PATH", onPath)
	_, err = host.Find("x", host.BinaryName("x"), []string{first})
	assert.ErrorAs(t, err, &nf, "a binary on PATH is not found")

	// A binary others may write is refused, not skipped.
	open := writeExe(t, filepath.Join(root, "4"), 0o757)
	_, err = host.Find("x", host.BinaryName("x"), []string{filepath.Dir(open), third})
	assert.EqualError(t, err, "plugin x: refusing "+open+": plugin binary "+open+" is writable by others (mode 0757); run: chmod 0755 "+open)

	_, err = host.Find("../x", host.BinaryName("../x"), nil)
	assert.ErrorContains(t, err, "invalid plugin name")
}

// TestTrustedDirs: the folders set outside the playbook, in order, and
// nothing else: not the playbook folder, not ./bin, not PATH.
func TestTrustedDirs(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	require.NoError(t, err)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("PATH", "/usr/bin:/bin")
	t.Setenv(host.PluginPathEnv, "")
	t.Chdir(t.TempDir())

	assert.Equal(t, []string{filepath.Dir(exe), filepath.Join(home, ".upshift", "plugins")}, host.TrustedDirs())

	t.Setenv(host.PluginPathEnv, "/opt/a:bin:./rel:/opt/b/:/opt/a")
	t.Setenv("XDG_DATA_HOME", "/data")
	assert.Equal(t, []string{"/opt/a", "/opt/b", filepath.Dir(exe), "/data/upshift/plugins", filepath.Join(home, ".upshift", "plugins")}, host.TrustedDirs(),
		"relative entries of UPSHIFT_PLUGIN_PATH are ignored: the current folder is often the playbook's")

	// The relative entries are named when a search fails.
	_, err = host.Find("x", host.BinaryName("x"), host.TrustedDirs())
	assert.ErrorContains(t, err, "bin (in $UPSHIFT_PLUGIN_PATH, ignored: not an absolute path)")
}

// TestResolve: a plugin is found in the trusted folders; a playbook's source
// may rename the binary but not point at a path.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(host.PluginPathEnv, dir)
	want := writeExe(t, dir, 0o755)
	got, err := host.Resolve(host.Requirement{Name: "x"})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	for _, src := range []string{"./tools/upshift-plugin-x", dir, want, "../upshift-plugin-x"} {
		_, err = host.Resolve(host.Requirement{Name: "x", Source: src})
		require.Error(t, err, src)
		assert.Contains(t, err.Error(), `plugin x: source "`+src+`" is a path, and upshift does not run binaries from where a playbook says`)
	}
}

// TestBareSourceIsTheBinaryName: source = "my-haproxy" names the binary to
// look for, in the same places, instead of upshift-plugin-<name>.
func TestBareSourceIsTheBinaryName(t *testing.T) {
	assert.Equal(t, "my-haproxy", host.BinaryFor("haproxy", "my-haproxy"))
	assert.Equal(t, "upshift-plugin-haproxy", host.BinaryFor("haproxy", ""))
	assert.Equal(t, "upshift-plugin-haproxy", host.BinaryFor("haproxy", "./vendor/bin"), "a path is not a name")

	dir := t.TempDir()
	t.Setenv(host.PluginPathEnv, dir)
	own := filepath.Join(dir, "my-haproxy")
	require.NoError(t, os.WriteFile(own, []byte("#!/bin/sh\n"), 0o755))
	writeExe(t, dir, 0o755) // upshift-plugin-x beside it must not be picked
	got, err := host.Resolve(host.Requirement{Name: "x", Source: "my-haproxy"})
	require.NoError(t, err)
	assert.Equal(t, own, got)

	_, err = host.Find("haproxy", "my-haproxy", []string{t.TempDir()})
	assert.ErrorContains(t, err, "no my-haproxy found")
	_, err = host.Find("haproxy", "..", nil)
	assert.ErrorContains(t, err, `invalid binary name ".."`)
}

func TestSuggest(t *testing.T) {
	known := host.StandardPlugins
	assert.Equal(t, "haproxy", host.Suggest("hapoxy", known))
	assert.Equal(t, "haproxy", host.Suggest("haprxoy", known))
	assert.Equal(t, "postgres", host.Suggest("postgre", known))
	assert.Equal(t, "ssh", host.Suggest("sh", known))
	assert.Equal(t, "", host.Suggest("oracle", known))
	assert.Equal(t, "", host.Suggest("haproxy", known), "not a suggestion for itself")
}

// TestStandardPluginsAreTheShippedOnes: the names upshift knows without
// finding them are exactly the plugins `make build` installs beside it.
func TestStandardPluginsAreTheShippedOnes(t *testing.T) {
	mains, err := filepath.Glob("../*/main.go")
	require.NoError(t, err)
	var shipped []string
	for _, m := range mains {
		shipped = append(shipped, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(shipped)
	assert.Equal(t, shipped, host.StandardPlugins, "update host.StandardPlugins")
}

func TestInstalled(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	t.Setenv(host.PluginPathEnv, a+":"+b)
	writeExe(t, a, 0o755)
	require.NoError(t, os.WriteFile(filepath.Join(b, host.BinaryName("kit2")), nil, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b, host.BinaryName("notexe")), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(b, "other"), nil, 0o755))
	got := host.Installed()
	assert.Equal(t, []string{"kit2", "x"}, got, strings.Join(got, ","))
}

func TestCheckVersion(t *testing.T) {
	assert.NoError(t, host.CheckVersion("haproxy", "0.3.1", ""))
	assert.NoError(t, host.CheckVersion("haproxy", "0.3.1", ">= 0.3, < 1.0"))
	assert.NoError(t, host.CheckVersion("haproxy", "1.2.7", "~> 1.2"))
	assert.EqualError(t, host.CheckVersion("haproxy", "0.3.1", ">= 1.0"), "plugin haproxy is version 0.3.1, but the playbook requires >= 1.0")
	assert.EqualError(t, host.CheckVersion("haproxy", "dev", "1.0"), `plugin haproxy reports version "dev", which is not a version, so it cannot meet "1.0"`)
	assert.ErrorContains(t, host.CheckVersion("haproxy", "1.0", "soon"), `invalid version constraint "soon"`)
}
