package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func onlyFile(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left: %v", entries)
}

func TestWriteFileKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "upstream.conf")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o640))
	require.NoError(t, os.Chmod(path, 0o640))
	owner := os.Getuid()
	if os.Geteuid() == 0 {
		owner = 65534 // only root can give a file away, and keep it given
		require.NoError(t, os.Chown(path, owner, owner))
	}
	require.NoError(t, WriteFile(path, []byte("new"), 0o600))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "mode kept")
	assert.Equal(t, uint32(owner), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	onlyFile(t, dir)
}

func TestWriteFileNewFileGetsPerm(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pid")
	require.NoError(t, WriteFile(path, []byte("1\n"), 0o604))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o604), st.Mode().Perm())
	onlyFile(t, dir)
}

func TestWriteFileModeForcesMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.json")
	require.NoError(t, os.WriteFile(path, []byte("{}"), 0o644))
	require.NoError(t, os.Chmod(path, 0o644))
	owner := os.Getuid()
	if os.Geteuid() == 0 {
		owner = 65534
		require.NoError(t, os.Chown(path, owner, owner))
	}
	require.NoError(t, WriteFileMode(path, []byte(`{"a":1}`), 0o600))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.Equal(t, uint32(owner), st.Sys().(*syscall.Stat_t).Uid, "owner kept")
	onlyFile(t, dir)
}

func TestWriteFileErrorNamesThePathOnce(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "upstream.conf")
	err := WriteFile(missing, []byte("x"), 0o644)
	require.Error(t, err)
	assert.Equal(t, "writing "+missing+": no such file or directory", err.Error())

	// A failed rename (over a folder) leaves the folder and no temp file.
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	require.Error(t, WriteFile(sub, []byte("x"), 0o644))
	st, err := os.Stat(sub)
	require.NoError(t, err)
	assert.True(t, st.IsDir())
	onlyFile(t, dir)
}
