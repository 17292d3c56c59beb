package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
)

// TestUntrustedBinaryRefused: a plugin binary, or a folder on the way to
// it, that another user could change is refused by Find and by Launch,
// with the file and the mode to set; the binary never runs.
func TestUntrustedBinaryRefused(t *testing.T) {
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	install := func(t *testing.T, dir string) string {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		p := filepath.Join(dir, host.BinaryName("testkit"))
		require.NoError(t, os.WriteFile(p, src, 0o755))
		return p
	}
	launch := func(path string) error {
		p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: path, SHA256: testkitSum, Logger: hclog.NewNullLogger()})
		if err == nil {
			_ = p.Close()
		}
		return err
	}

	t.Run("binary writable by its group", func(t *testing.T) {
		p := install(t, t.TempDir())
		require.NoError(t, os.Chmod(p, 0o775))
		err := launch(p)
		assert.EqualError(t, err, "plugin testkit: plugin binary "+p+" is writable by its group (mode 0775); run: chmod 0755 "+p)
		var ue *host.UntrustedError
		assert.ErrorAs(t, err, &ue)
		_, err = host.Find("testkit", host.BinaryName("testkit"), []string{filepath.Dir(p)})
		assert.ErrorContains(t, err, "is writable by its group (mode 0775); run: chmod 0755 "+p)
	})
	t.Run("folder writable by everyone", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "open")
		p := install(t, dir)
		require.NoError(t, os.Chmod(dir, 0o777))
		assert.EqualError(t, launch(p), "plugin testkit: folder "+dir+" is writable by its group and others (mode 0777); run: chmod 0755 "+dir)
	})
	t.Run("a folder above, through a link", func(t *testing.T) {
		root := t.TempDir()
		open := filepath.Join(root, "open")
		p := install(t, filepath.Join(open, "deep"))
		require.NoError(t, os.Chmod(open, 0o757))
		link := filepath.Join(t.TempDir(), "plugins")
		require.NoError(t, os.Symlink(filepath.Join(open, "deep"), link))
		err := launch(filepath.Join(link, host.BinaryName("testkit")))
		assert.ErrorContains(t, err, "folder "+open+" is writable by others (mode 0757)")
		assert.ErrorContains(t, launch(p), "folder "+open+" is writable by others (mode 0757)")
	})
	t.Run("sticky folder like /tmp is fine", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sticky")
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, os.Chmod(dir, 0o777|os.ModeSticky))
		mine := filepath.Join(dir, "mine")
		p := install(t, mine)
		assert.NoError(t, launch(p))
	})
	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a file away")
		}
		p := install(t, t.TempDir())
		require.NoError(t, os.Chown(p, 65534, 65534))
		err := launch(p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "plugin binary "+p+" is owned by uid 65534")
		assert.Contains(t, err.Error(), "not by root or by the user running upshift (uid 0)")
		assert.Contains(t, err.Error(), "run: chown root "+p)
		var ue *host.UntrustedError
		require.True(t, errors.As(err, &ue))
		assert.Equal(t, 65534, ue.Owner)
	})
}
