// Package dbserver owns what the throwaway database servers of
// internal/servers/postgresd and internal/servers/mariadbd share: a free
// loopback port, the tail of a server's log, the server's random password,
// the files a server keeps, and the temporary folders those servers run
// in, which a test binary that panicked or was killed leaves behind and
// the next start removes.
//
// Files: the starter may be root, and a folder may hold what another user
// (the postgres user) can change. So every file written here is made
// afresh (Create: whatever was at its path is removed first, os.Remove
// removing a symbolic link rather than its target, and the file is made
// with O_CREATE|O_EXCL|O_NOFOLLOW, failing rather than following a link
// planted in between) and its mode set on the open file; a file replaced
// whole (WriteFile) is written under a fresh name and renamed into place,
// which replaces a link rather than writing through it; a log appended to
// (OpenLog) is reused only when it is a regular file of this user with one
// link, else made afresh. Files are read (Open, ReadFile) without
// following a link in the last component and without blocking on a FIFO,
// and only when they are regular files. postgresd also keeps the files
// root writes in folders root owns; this is the second wall.
//
// A temporary folder made by MkdirTemp holds a lock file, locked (flock)
// for as long as the process that made it keeps the folder: the kernel
// drops the lock when that process ends, however it ends. The lock file is
// made and locked under another name and only then renamed to LockFile,
// so that no sweep ever finds it unlocked while its maker lives (a folder
// without either is spared while Fresh). Sweep removes a folder only when it
// belongs to this (effective) user, its lock is free and the caller says
// its server is not alive, so the folders of servers other test binaries
// run at the same time, and other users' folders, are never touched.
package dbserver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LastLines is the last n lines of s joined by " | ", for an error message
// of one line.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// LogSince returns what the file at path gained after offset (at most
// 1 MiB), or "" when it cannot be read.
func LogSince(path string, offset int64) string {
	f, err := Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

// ReadPassword returns the password kept in the file at path, or "" when
// there is none (or it is not a regular file).
func ReadPassword(path string) string {
	b, err := ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Password returns the password kept in the file at path, first making one
// (32 hex digits from crypto/rand, so it needs no quoting in a URL, a
// MySQL DSN or an SQL string) and writing it there, readable by its owner
// only, when there is none.
func Password(path string) (string, error) {
	if pw := ReadPassword(path); pw != "" {
		return pw, nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	if err := WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// Open opens the file at path for reading, without following a symbolic
// link in its last component or blocking on a FIFO, and only when it is a
// regular file.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", path)
		}
		return nil, err
	}
	return f, nil
}

// ReadFile is os.ReadFile through Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Create makes a new, empty file at path with mode perm (whatever the
// umask), open for writing. Whatever was at path is removed first (a
// symbolic link, not its target); should another process put something
// there in between, Create fails rather than follow it.
func Create(path string, perm os.FileMode) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return f, nil
}

// WriteFile replaces the file at path with one holding data, mode perm:
// written under a fresh random name in the same folder (os.CreateTemp,
// O_EXCL, so two writers never share one) and renamed over path, which
// replaces whatever is there, a link included, rather than writing
// through it.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// OpenLog opens the log at path for appending: the file there when it is
// a regular file of this (effective) user with no other link to it, else
// a fresh one (mode 0600, made by Create) in place of whatever is there.
func OpenLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err == nil {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && ownedAlone(st) {
			return f, nil
		}
		f.Close()
	}
	return Create(path, 0o600)
}

// ownedAlone reports whether st is of this (effective) user, with one link.
func ownedAlone(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Geteuid() && sys.Nlink == 1
}

// ownedByMe reports whether st is of this (effective) user.
func ownedByMe(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Geteuid()
}

// LockFile is the name of the lock file in a folder made by MkdirTemp.
const LockFile = "owner.lock"

// TempDir is a folder made by MkdirTemp, locked by this process until
// Release.
type TempDir struct {
	Path string
	lock *os.File
}

// lockStep, when set (by a test), is called while MkdirTemp makes dir:
// after making the folder, and after locking the lock file under its
// first name.
var lockStep func(dir string)

// MkdirTemp makes a fresh folder os.TempDir()/prefix* (mode 0700) and
// locks it for this process. The lock file is locked before it is renamed
// to LockFile, so a sweep never finds it unlocked; until it is made the
// folder has none, and a sweep spares it as Fresh; once made and locked
// under its first name, a sweep finds it locked.
func MkdirTemp(prefix string) (*TempDir, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	if lockStep != nil {
		lockStep(dir)
	}
	making := filepath.Join(dir, LockFile+".new")
	f, err := os.OpenFile(making, os.O_CREATE|os.O_EXCL|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err == nil {
		// A sweep may hold a shared lock on it for a moment (of a stale
		// folder only): waited out.
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err == nil && lockStep != nil {
			lockStep(dir)
		}
		if err == nil {
			err = os.Rename(making, filepath.Join(dir, LockFile))
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &TempDir{Path: dir, lock: f}, nil
}

// Release unlocks the folder (it does not remove it). Safe to call more
// than once.
func (d *TempDir) Release() {
	if d != nil && d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// Fresh is how long a folder without a lock file is left alone: it may be
// one being made right now.
const Fresh = time.Minute

// Abandoned reports whether no live process holds dir's lock: its lock
// file is free, or, for a folder without one (made before lock files, or
// being made), it is older than Fresh. A folder of another user, or whose
// lock file this process cannot open or is no regular file, is not
// abandoned: it is not ours to judge. (Opened without following a link
// or blocking on a FIFO: as root, other users' folders match a prefix.)
func Abandoned(dir string) bool {
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() || !ownedByMe(st) {
		return false
	}
	lock := filepath.Join(dir, LockFile)
	f, err := Open(lock)
	if errors.Is(err, os.ErrNotExist) {
		// Being made: the lock file is locked under its first name, then
		// renamed to LockFile (looked for again, it may have been renamed
		// in between). Under its first name, the maker may not have locked
		// it yet: it is judged only once the folder is stale, and under a
		// shared lock, which the maker's (blocking) lock waits out.
		f, err = Open(lock + ".new")
		if errors.Is(err, os.ErrNotExist) {
			f, err = Open(lock)
		} else if err == nil {
			defer f.Close()
			return Stale(dir) && syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return Stale(dir)
	}
	if err != nil {
		return false
	}
	defer f.Close()
	// Taken and closed at once: a sweep in another process that finds it
	// taken leaves the folder alone, which is right while it is removed.
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// Stale reports whether dir was last changed more than Fresh ago.
func Stale(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && time.Since(st.ModTime()) > Fresh
}

// Sweep removes the folders os.TempDir()/prefix* of this (effective) user
// for which leftover returns true, and returns those it removed. Other
// users' folders are skipped. Errors are ignored: a folder that cannot be
// removed stays for a later sweep, or for its owner.
func Sweep(prefix string, leftover func(dir string) bool) []string {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	var removed []string
	for _, dir := range matches {
		if st, err := os.Lstat(dir); err != nil || !st.IsDir() || !ownedByMe(st) {
			continue
		}
		if leftover(dir) && os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}
