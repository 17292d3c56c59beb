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
	lf.Set(&host.LockedPlugin{Name: "testkit", Version: "0.1.0", Path: ".upshift/plugins/upshift-plugin-testkit", SHA256: sumA})
	lf.Set(&host.LockedPlugin{Name: "haproxy", Version: "0.2.0", Path: "/opt/upshift/upshift-plugin-haproxy", SHA256: sumB})
	lf.Set(&host.LockedPlugin{Name: "haproxy", Version: "0.3.0", Path: "/opt/upshift/upshift-plugin-haproxy", SHA256: sumB})

	want := "# Written by `upshift init`: the plugin binaries this playbook runs, pinned by checksum.\n" +
		"plugin \"haproxy\" {\n" +
		"  version = \"0.3.0\"\n" +
		"  path    = \"/opt/upshift/upshift-plugin-haproxy\"\n" +
		"  sha256  = \"" + sumB + "\"\n" +
		"}\n\n" +
		"plugin \"testkit\" {\n" +
		"  version = \"0.1.0\"\n" +
		"  path    = \".upshift/plugins/upshift-plugin-testkit\"\n" +
		"  sha256  = \"" + sumA + "\"\n" +
		"}\n"
	assert.Equal(t, want, string(lf.Bytes()))

	dir := t.TempDir()
	path := filepath.Join(dir, host.LockFileName)
	require.NoError(t, lf.WriteFile(path))
	got, err := host.ReadLockFile(path)
	require.NoError(t, err)
	require.Len(t, got.Plugins, 2)
	assert.Equal(t, host.LockedPlugin{Name: "testkit", Version: "0.1.0", Path: ".upshift/plugins/upshift-plugin-testkit", SHA256: sumA}, *got.Plugin("testkit"))
	assert.Equal(t, "0.3.0", got.Plugin("haproxy").Version)
	assert.Nil(t, got.Plugin("nginx"))

	spec, err := got.LaunchSpec(dir, "testkit", nil)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, ".upshift/plugins/upshift-plugin-testkit"), spec.Path)
	assert.Equal(t, sumA, spec.SHA256)
	spec, err = got.LaunchSpec(dir, "haproxy", nil)
	require.NoError(t, err)
	assert.Equal(t, "/opt/upshift/upshift-plugin-haproxy", spec.Path)
	_, err = got.LaunchSpec(dir, "nginx", nil)
	assert.EqualError(t, err, "plugin nginx is not in upshift.lock.hcl; run `upshift init`")
}

func TestReadLockFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := host.ReadLockFile(filepath.Join(dir, host.LockFileName))
	assert.ErrorIs(t, err, fs.ErrNotExist)

	for name, tc := range map[string]struct{ src, want string }{
		"syntax":        {"plugin \"a\" {\n  version = \n}\n", "upshift.lock.hcl:2"},
		"missing field": {"plugin \"a\" {\n  version = \"1\"\n  path = \"p\"\n}\n", `"sha256" is required`},
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

func TestInit(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	plugDir := filepath.Join(dir, ".upshift", "plugins")
	require.NoError(t, os.MkdirAll(plugDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(plugDir, host.BinaryName("testkit")), src, 0o755))

	lf, err := host.Init(context.Background(), dir, []host.Requirement{{Name: "testkit"}}, hclog.NewNullLogger())
	require.NoError(t, err)
	require.Len(t, lf.Plugins, 1)
	assert.Equal(t, host.LockedPlugin{Name: "testkit", Version: "0.1.0", Path: filepath.Join(".upshift", "plugins", "upshift-plugin-testkit"), SHA256: testkitSum}, *lf.Plugins[0])

	// What Init wrote is what a run reads and launches.
	read, err := host.ReadLockFile(filepath.Join(dir, host.LockFileName))
	require.NoError(t, err)
	assert.Equal(t, lf.Plugins, read.Plugins)
	spec, err := read.LaunchSpec(dir, "testkit", hclog.NewNullLogger())
	require.NoError(t, err)
	p, err := host.Launch(context.Background(), spec)
	require.NoError(t, err)
	require.NoError(t, p.Close())

	// An explicit source wins over .upshift/plugins.
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, host.BinaryName("testkit")), src, 0o755))
	lf, err = host.Init(context.Background(), dir, []host.Requirement{{Name: "testkit", Source: other}}, hclog.NewNullLogger())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(other, host.BinaryName("testkit")), lf.Plugins[0].Path, "outside the playbook folder the path is absolute")
}

func TestInitFailsWithoutWriting(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", t.TempDir())
	_, err := host.Init(context.Background(), dir, []host.Requirement{{Name: "nosuch"}}, hclog.NewNullLogger())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no upshift-plugin-nosuch found")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))

	// A binary that is not a plugin is refused too.
	plugDir := filepath.Join(dir, ".upshift", "plugins")
	require.NoError(t, os.MkdirAll(plugDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(plugDir, host.BinaryName("fake")), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	_, err = host.Init(context.Background(), dir, []host.Requirement{{Name: "fake"}}, hclog.NewNullLogger())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin fake")
	assert.NoFileExists(t, filepath.Join(dir, host.LockFileName))
}
