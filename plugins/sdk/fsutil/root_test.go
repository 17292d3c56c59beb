package fsutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckBackupTarget(t *testing.T) {
	for _, tc := range []struct{ to, root, data, err string }{
		{"/", "", "/srv/app/data", "cannot be /"},
		{"/../", "", "/srv/app/data", "cannot be /"},
		{"backups/x", "", "/srv/app/data", "absolute"},
		{"/srv/app/data", "", "/srv/app/data", "data folder itself"},
		{"/srv/app", "", "/srv/app/data", "holds the data folder"},
		{"/srv/app/data/old", "", "/srv/app/data", "inside the data folder"},
		{"/etc", "/var/backups", "/srv/app/data", "not inside the backup root"},
		{"/var/backups", "/var/backups", "/srv/app/data", "not inside the backup root"},
		{"/var/backups/../../etc", "/var/backups", "/srv/app/data", "not inside the backup root"},
		{"/var/backups/run-1/data", "/var/backups", "/srv/app/data", ""},
		{"/backups/run-1/data", "", "/srv/app/data", ""},
	} {
		err := CheckBackupTarget(tc.to, tc.root, tc.data)
		if tc.err == "" {
			assert.NoError(t, err, tc.to)
		} else {
			assert.ErrorContains(t, err, tc.err, tc.to)
		}
	}
}

func TestOpenInRefusesLinksOut(t *testing.T) {
	data, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(outside, "f"), filepath.Join(data, "f")))
	require.NoError(t, os.Symlink(outside, filepath.Join(data, "d")))
	for _, rel := range []string{"f", "d/g", "d/h/i"} {
		_, err := OpenIn(data, filepath.Join(data, rel), os.O_CREATE|os.O_WRONLY, 0o644, 0o755)
		assert.ErrorContains(t, err, "symbolic link", rel)
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing made outside")
	_, err = OpenIn(data, "/etc/passwd", os.O_RDONLY, 0, 0)
	assert.ErrorContains(t, err, "not inside")

	// WriteFileIn: a pid file whose folder is a link out is refused; a
	// link in the file's place is replaced, not followed.
	assert.ErrorContains(t, WriteFileIn(data, filepath.Join(data, "d", "pid"), []byte("1\n"), 0o644), "symbolic link")
	target := filepath.Join(outside, "victim")
	require.NoError(t, os.WriteFile(target, []byte("keep"), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(data, "pid")))
	require.NoError(t, WriteFileIn(data, filepath.Join(data, "pid"), []byte("1\n"), 0o644))
	b, _ := os.ReadFile(target)
	assert.Equal(t, "keep", string(b))
	fi, err := os.Lstat(filepath.Join(data, "pid"))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())

	// WriteFile does not lend the link's target mode to the new file.
	require.NoError(t, os.Symlink(target, filepath.Join(outside, "link")))
	require.NoError(t, WriteFile(filepath.Join(outside, "link"), []byte("new"), 0o644))
	b, _ = os.ReadFile(target)
	assert.Equal(t, "keep", string(b))

	// O_NOFOLLOW where no folder applies.
	_, err = OpenNoFollow(filepath.Join(data, "f"), nil, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	assert.ErrorContains(t, err, "symbolic link")
}
