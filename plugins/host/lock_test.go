package host_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
)

func TestChecksum(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, []byte("test"), 0o644))
	sum, err := host.Checksum(p)
	require.NoError(t, err)
	// sha256("test"), as sha256sum prints it.
	assert.Equal(t, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", sum)
	_, err = host.Checksum(filepath.Join(t.TempDir(), "missing"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestLockFileRoundTrip(t *testing.T) {
	sumA := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	sumB := "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	lf := &host.LockFile{}
	lf.Set(&host.LockedPlugin{Name: "testkit", Version: "0.1.0", Path: "/somewhere/upshift-plugin-testkit", SHA256: sumA})
	lf.Set(&host.LockedPlugin{Name: "haproxy", Version: "0.2.0", SHA256: sumB})
	lf.Set(&host.LockedPlugin{Name: "haproxy", Version: "0.3.0", SHA256: sumB})

	// Name, version and checksum: never a path.
	want := "# Written by `upshift init`: the plugins this playbook runs, pinned by version and checksum.\n" +
		"plugin \"haproxy\" {\n" +
		"  version = \"0.3.0\"\n" +
		"  sha256  = \"" + sumB + "\"\n" +
		"}\n\n" +
		"plugin \"testkit\" {\n" +
		"  version = \"0.1.0\"\n" +
		"  sha256  = \"" + sumA + "\"\n" +
		"}\n"
	assert.Equal(t, want, string(lf.Bytes()))

	dir := t.TempDir()
	path := filepath.Join(dir, host.LockFileName)
	require.NoError(t, lf.WriteFile(path))
	got, err := host.ReadLockFile(path)
	require.NoError(t, err)
	require.Len(t, got.Plugins, 2)
	assert.Equal(t, host.LockedPlugin{Name: "testkit", Version: "0.1.0", SHA256: sumA}, *got.Plugin("testkit"))
	assert.Equal(t, "0.3.0", got.Plugin("haproxy").Version)
	assert.Nil(t, got.Plugin("nginx"))
	assert.Empty(t, got.IgnoredPaths)

	// The binary comes from the trusted folders, whatever the lock says.
	plugins := t.TempDir()
	t.Setenv(host.PluginPathEnv, plugins)
	bin := filepath.Join(plugins, host.BinaryName("testkit"))
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	spec, err := got.LaunchSpec(host.Requirement{Name: "testkit"}, nil)
	require.NoError(t, err)
	assert.Equal(t, bin, spec.Path)
	assert.Equal(t, sumA, spec.SHA256)
	_, err = got.LaunchSpec(host.Requirement{Name: "haproxy"}, nil)
	assert.ErrorContains(t, err, "plugin haproxy: no upshift-plugin-haproxy found; looked in:\n  - "+filepath.Join(plugins, "upshift-plugin-haproxy")+" (not found)")
	assert.ErrorContains(t, err, "(upshift.lock.hcl pins plugin haproxy; upshift looks for its binary only in the trusted plugin folders)")
	_, err = got.LaunchSpec(host.Requirement{Name: "nginx"}, nil)
	assert.EqualError(t, err, "plugin nginx is not in upshift.lock.hcl; run `upshift init`")
}

// TestOldLockFileWithPaths: a lock file written when entries had paths
// still loads; the paths are ignored (and named, for a warning).
func TestOldLockFileWithPaths(t *testing.T) {
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	p := filepath.Join(t.TempDir(), host.LockFileName)
	require.NoError(t, os.WriteFile(p, []byte("plugin \"testkit\" {\n  version = \"0.1.0\"\n  path = \".upshift/plugins/upshift-plugin-testkit\"\n  sha256 = \""+sum+"\"\n}\n"+
		"plugin \"kit2\" {\n  version = \"0.1.0\"\n  sha256 = \""+sum+"\"\n}\n"), 0o644))
	lf, err := host.ReadLockFile(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"testkit"}, lf.IgnoredPaths)
	assert.Equal(t, host.LockedPlugin{Name: "testkit", Version: "0.1.0", SHA256: sum}, *lf.Plugin("testkit"), "the path is dropped")
	assert.NotContains(t, string(lf.Bytes()), "path", "and not written back")
}

func TestReadLockFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := host.ReadLockFile(filepath.Join(dir, host.LockFileName))
	assert.ErrorIs(t, err, fs.ErrNotExist)

	for name, tc := range map[string]struct{ src, want string }{
		"syntax":        {"plugin \"a\" {\n  version = \n}\n", "upshift.lock.hcl:2"},
		"missing field": {"plugin \"a\" {\n  version = \"1\"\n  path = \"p\"\n}\n", `"sha256" is required`},
		"bad name":      {"plugin \"a/b\" {\n  version = \"1\"\n  sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n}\n", `invalid plugin name "a/b"`},
		"bad sum":       {"plugin \"a\" {\n  version = \"1\"\n  path = \"p\"\n  sha256 = \"xyz\"\n}\n", "not a hex SHA-256"},
		"twice": {"plugin \"a\" {\n  version = \"1\"\n  path = \"p\"\n  sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n}\n" +
			"plugin \"a\" {\n  version = \"1\"\n  path = \"p\"\n  sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n}\n", "listed twice"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), host.LockFileName)
			require.NoError(t, os.WriteFile(p, []byte(tc.src), 0o644))
			_, err := host.ReadLockFile(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestInit: init pins what the trusted folders hold, by name, version and
// checksum, and never looks in the playbook folder, ./bin or PATH.
func TestInit(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	// Binaries a playbook might ship, or leave where upshift once looked.
	marker := filepath.Join(t.TempDir(), "ran")
	evil := []byte("#!/bin/sh\necho ran >> '" + marker + "'\n")
	t.Chdir(dir)
	for _, d := range []string{filepath.Join(dir, ".upshift", "plugins"), filepath.Join(dir, "bin"), filepath.Join(dir, "path")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, host.BinaryName("testkit")), evil, 0o755))
	}
	t.Setenv("PATH", filepath.Join(dir, "path")+":"+os.Getenv("PATH"))
	_, err = host.Init(context.Background(), dir, []host.Requirement{{Name: "testkit"}}, hclog.NewNullLogger())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no upshift-plugin-testkit found")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))
	assert.NoFileExists(t, marker, "nothing from the playbook folder, ./bin or PATH ran")

	plugins := t.TempDir()
	t.Setenv(host.PluginPathEnv, plugins)
	bin := filepath.Join(plugins, host.BinaryName("testkit"))
	require.NoError(t, os.WriteFile(bin, src, 0o755))
	lf, err := host.Init(context.Background(), dir, []host.Requirement{{Name: "testkit"}}, hclog.NewNullLogger())
	require.NoError(t, err)
	require.Len(t, lf.Plugins, 1)
	assert.Equal(t, host.LockedPlugin{Name: "testkit", Version: "0.1.0", Path: bin, SHA256: testkitSum}, *lf.Plugins[0], "Path says where it was found")
	written, err := os.ReadFile(filepath.Join(dir, host.LockFileName))
	require.NoError(t, err)
	assert.NotContains(t, string(written), "path")
	assert.NotContains(t, string(written), plugins)

	// What Init wrote is what a run reads and launches.
	read, err := host.ReadLockFile(filepath.Join(dir, host.LockFileName))
	require.NoError(t, err)
	assert.Equal(t, testkitSum, read.Plugin("testkit").SHA256)
	spec, err := read.LaunchSpec(host.Requirement{Name: "testkit"}, hclog.NewNullLogger())
	require.NoError(t, err)
	p, err := host.Launch(context.Background(), spec)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	assert.NoFileExists(t, marker)
}

func TestInitFailsWithoutWriting(t *testing.T) {
	dir := t.TempDir()
	plugins := t.TempDir()
	t.Setenv(host.PluginPathEnv, plugins)
	_, err := host.Init(context.Background(), dir, []host.Requirement{{Name: "nosuch"}}, hclog.NewNullLogger())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no upshift-plugin-nosuch found")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))

	// A binary that is not a plugin is refused too.
	require.NoError(t, os.WriteFile(filepath.Join(plugins, host.BinaryName("fake")), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	_, err = host.Init(context.Background(), dir, []host.Requirement{{Name: "fake"}}, hclog.NewNullLogger())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin fake")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))

	// So is a source that is a path.
	_, err = host.Init(context.Background(), dir, []host.Requirement{{Name: "fake", Source: "./tools/upshift-plugin-fake"}}, hclog.NewNullLogger())
	assert.ErrorContains(t, err, "is a path")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))
}
