package dbserver

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err, "the port is free")
	l.Close()
}

func TestLastLinesAndLogSince(t *testing.T) {
	assert.Equal(t, "c | d", LastLines("a\nb\nc\nd\n", 2))
	assert.Equal(t, "a", LastLines("a\n", 5))
	p := filepath.Join(t.TempDir(), "log")
	require.NoError(t, os.WriteFile(p, []byte("old\nnew\n"), 0o600))
	assert.Equal(t, "new\n", LogSince(p, 4))
	assert.Equal(t, "", LogSince(p+".missing", 0))
}

func TestPasswordIsMadeOnceAndPrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	assert.Equal(t, "", ReadPassword(p))
	pw, err := Password(p)
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{32}$`), pw)
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	again, err := Password(p)
	require.NoError(t, err)
	assert.Equal(t, pw, again, "kept, not made again")
	assert.Equal(t, pw, ReadPassword(p))
	other, err := Password(filepath.Join(t.TempDir(), "password"))
	require.NoError(t, err)
	assert.NotEqual(t, pw, other)
}

// A folder is left alone while its maker holds it (here: this process,
// through another open file description), or while it is fresh and has no
// lock file; it is swept once its maker let go and its server is not alive.
func TestSweepRemovesOnlyAbandonedFolders(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const prefix = "upshift-test-"
	held, err := MkdirTemp(prefix)
	require.NoError(t, err)
	defer held.Release()
	assert.False(t, Abandoned(held.Path))

	released, err := MkdirTemp(prefix)
	require.NoError(t, err)
	released.Release()
	released.Release()
	assert.True(t, Abandoned(released.Path))

	serving, err := MkdirTemp(prefix)
	require.NoError(t, err)
	serving.Release()

	fresh := filepath.Join(os.TempDir(), prefix+"fresh")
	require.NoError(t, os.Mkdir(fresh, 0o700))
	assert.False(t, Abandoned(fresh), "no lock file, but maybe being made")
	old := filepath.Join(os.TempDir(), prefix+"old")
	require.NoError(t, os.Mkdir(old, 0o700))
	long := time.Now().Add(-2 * Fresh)
	require.NoError(t, os.Chtimes(old, long, long))
	assert.True(t, Abandoned(old))

	other := filepath.Join(os.TempDir(), "other-"+prefix)
	require.NoError(t, os.Mkdir(other, 0o700))
	require.NoError(t, os.Chtimes(other, long, long))

	removed := Sweep(prefix, func(dir string) bool { return Abandoned(dir) && dir != serving.Path })
	assert.ElementsMatch(t, []string{released.Path, old}, removed)
	for _, kept := range []string{held.Path, serving.Path, fresh, other} {
		assert.DirExists(t, kept)
	}
	assert.NoDirExists(t, released.Path)
	assert.NoDirExists(t, old)
}
