package dbserver

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
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

// outside is a file a planted link points at: whatever happens at the
// link, it must keep its content and mode.
func outside(t *testing.T) (path string, check func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "shadow")
	require.NoError(t, os.WriteFile(path, []byte("secret\n"), 0o640))
	before, err := os.Stat(path)
	require.NoError(t, err)
	return path, func() {
		t.Helper()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, "secret\n", string(b), "the link's target is not written")
		st, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, before.Mode(), st.Mode(), "nor its mode changed")
		assert.Equal(t, before.Sys().(*syscall.Stat_t).Uid, st.Sys().(*syscall.Stat_t).Uid, "nor its owner")
	}
}

func assertRegular(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	require.NoError(t, err)
	assert.True(t, st.Mode().IsRegular(), "%s: %v", path, st.Mode())
	assert.Equal(t, perm, st.Mode().Perm(), path)
}

// Links planted where a file is written (by another user, in a folder it
// may change) are replaced, never written through; planted where a file
// is read, they are not followed.
func TestFilesDoNotFollowPlantedLinks(t *testing.T) {
	target, check := outside(t)
	dir := t.TempDir()
	pwPath := filepath.Join(dir, "password")
	for _, p := range []string{pwPath, pwPath + ".tmp"} {
		require.NoError(t, os.Symlink(target, p))
	}
	assert.Equal(t, "", ReadPassword(pwPath), "a link is not read")
	pw, err := Password(pwPath)
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{32}$`), pw)
	assertRegular(t, pwPath, 0o600)
	left, err := filepath.Glob(filepath.Join(dir, ".password.tmp*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file left")
	check()

	port := filepath.Join(dir, "port")
	require.NoError(t, os.Symlink(target, port))
	require.NoError(t, WriteFile(port, []byte("5\n"), 0o644))
	assertRegular(t, port, 0o644)
	check()

	made := filepath.Join(dir, "made")
	require.NoError(t, os.Symlink(target, made))
	f, err := Create(made, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString("x")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assertRegular(t, made, 0o600)
	check()

	// A log: reused when a plain file of ours, else made afresh: a link,
	// or a hard link to another file.
	log := filepath.Join(dir, "log")
	require.NoError(t, os.Symlink(target, log))
	f, err = OpenLog(log)
	require.NoError(t, err)
	_, err = f.WriteString("one\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assertRegular(t, log, 0o600)
	f, err = OpenLog(log)
	require.NoError(t, err)
	_, err = f.WriteString("two\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "one\ntwo\n", string(b), "a log of ours is appended to")
	hard := filepath.Join(dir, "hard")
	if os.Link(target, hard) == nil {
		f, err = OpenLog(hard)
		require.NoError(t, err)
		_, err = f.WriteString("log\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
		check()
	}
	assert.Equal(t, "", LogSince(filepath.Join(dir, "password.tmp"), 0))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "linked-log")))
	assert.Equal(t, "", LogSince(filepath.Join(dir, "linked-log"), 0), "a link is not read")
	check()
}

// A FIFO where a file is read does not block the reader.
func TestFIFOIsNotRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	require.NoError(t, syscall.Mkfifo(p, 0o600))
	done := make(chan string)
	go func() { done <- ReadPassword(p) }()
	select {
	case got := <-done:
		assert.Equal(t, "", got)
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	_, err := ReadFile(p)
	assert.ErrorContains(t, err, "not a regular file")
}

// While MkdirTemp makes a folder, a sweep in another process leaves it
// alone: made, without a lock file yet, it is spared as Fresh; once the
// lock file is made under its first name, it is spared because it is
// locked, however old the folder looks; a sweeper running all along does
// not make the maker fail, and the maker ends up holding it.
func TestSweepSparesAFolderBeingMade(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const prefix = "upshift-test-"
	long := time.Now().Add(-2 * Fresh)
	var steps int
	lockStep = func(dir string) {
		steps++
		if steps == 2 {
			// Fresh no longer protects it: only the lock does.
			require.NoError(t, os.Chtimes(dir, long, long))
			require.True(t, Stale(dir))
			f, err := os.Open(filepath.Join(dir, LockFile+".new"))
			require.NoError(t, err)
			assert.Error(t, syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB), "locked before the rename")
			f.Close()
		}
		assert.False(t, Abandoned(dir), "step %d", steps)
		assert.Empty(t, Sweep(prefix, Abandoned), "step %d", steps)
		assert.DirExists(t, dir)
	}
	t.Cleanup(func() { lockStep = nil })
	d, err := MkdirTemp(prefix)
	require.NoError(t, err)
	defer d.Release()
	assert.Equal(t, 2, steps)
	assert.FileExists(t, filepath.Join(d.Path, LockFile))
	assert.NoFileExists(t, filepath.Join(d.Path, LockFile+".new"))
	require.NoError(t, os.Chtimes(d.Path, long, long))
	assert.False(t, Abandoned(d.Path), "held, however old")
	lockStep = nil

	// A sweeper running while folders are made (taking each free lock for
	// a moment) never removes one being made nor makes a maker fail.
	stop := make(chan struct{})
	swept := make(chan []string)
	go func() {
		var all []string
		for {
			select {
			case <-stop:
				swept <- all
				return
			default:
				all = append(all, Sweep(prefix, Abandoned)...)
			}
		}
	}()
	var made []*TempDir
	for i := 0; i < 50; i++ {
		other, err := MkdirTemp(prefix)
		if !assert.NoError(t, err) {
			break
		}
		made = append(made, other)
	}
	close(stop)
	assert.Empty(t, <-swept)
	for _, other := range made {
		defer other.Release()
		f, err := os.Open(filepath.Join(other.Path, LockFile))
		require.NoError(t, err)
		assert.Error(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), "its maker holds it")
		f.Close()
	}

	// A folder whose maker died with the lock file under its first name is
	// swept once stale.
	dead := filepath.Join(os.TempDir(), prefix+"dead")
	require.NoError(t, os.Mkdir(dead, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dead, LockFile+".new"), nil, 0o600))
	assert.False(t, Abandoned(dead), "fresh")
	require.NoError(t, os.Chtimes(dead, long, long))
	assert.True(t, Abandoned(dead))
}

// A lock file that is a FIFO or a link is not opened (as root the sweep
// sees other users' folders); a folder of another user is never judged or
// removed.
func TestSweepSkipsFoldersItShouldNotJudge(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const prefix = "upshift-test-"
	long := time.Now().Add(-2 * Fresh)
	fifo := filepath.Join(os.TempDir(), prefix+"fifo")
	require.NoError(t, os.Mkdir(fifo, 0o700))
	require.NoError(t, syscall.Mkfifo(filepath.Join(fifo, LockFile), 0o600))
	require.NoError(t, os.Chtimes(fifo, long, long))
	linked := filepath.Join(os.TempDir(), prefix+"link")
	require.NoError(t, os.Mkdir(linked, 0o700))
	free := filepath.Join(t.TempDir(), "free.lock")
	require.NoError(t, os.WriteFile(free, nil, 0o600))
	require.NoError(t, os.Symlink(free, filepath.Join(linked, LockFile)))
	require.NoError(t, os.Chtimes(linked, long, long))
	kept := []string{fifo, linked}
	root := os.Geteuid() == 0
	if root {
		theirs := filepath.Join(os.TempDir(), prefix+"theirs")
		require.NoError(t, os.Mkdir(theirs, 0o700))
		require.NoError(t, os.Chown(theirs, 65534, 65534))
		require.NoError(t, os.Chtimes(theirs, long, long))
		assert.False(t, Abandoned(theirs), "another user's")
		kept = append(kept, theirs)
	}

	done := make(chan []string)
	go func() {
		var abandoned []string
		for _, d := range kept {
			if Abandoned(d) {
				abandoned = append(abandoned, d)
			}
		}
		done <- abandoned
	}()
	select {
	case abandoned := <-done:
		assert.Empty(t, abandoned, "a FIFO or a link for a lock file, another user's folder: not ours to judge")
	case <-time.After(5 * time.Second):
		t.Fatal("Abandoned blocked on a FIFO")
	}
	go func() { done <- Sweep(prefix, Abandoned) }()
	select {
	case removed := <-done:
		assert.Empty(t, removed)
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep blocked")
	}
	for _, d := range kept {
		assert.DirExists(t, d)
	}
	if !root {
		t.Skip("not root: cannot make another user's folder to check that Sweep never removes it")
	}
	// Whatever the caller says, another user's folder is not removed.
	assert.Empty(t, Sweep(prefix+"theirs", func(string) bool { return true }))
	assert.DirExists(t, filepath.Join(os.TempDir(), prefix+"theirs"))
}

// Writers of one file at the same time do not share a temporary file: each
// write succeeds and the file ends up whole, holding one of them.
func TestConcurrentWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "port")
	errs := make(chan error)
	for i := 0; i < 8; i++ {
		go func(i int) {
			var err error
			for j := 0; j < 50 && err == nil; j++ {
				err = WriteFile(p, []byte(strconv.Itoa(i)+"\n"), 0o600)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < 8; i++ {
		assert.NoError(t, <-errs)
	}
	b, err := ReadFile(p)
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^[0-7]\n$`), string(b))
	assertRegular(t, p, 0o600)
	left, err := filepath.Glob(filepath.Join(filepath.Dir(p), ".port.tmp*"))
	require.NoError(t, err)
	assert.Empty(t, left)
}
