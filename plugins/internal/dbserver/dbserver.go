// Package dbserver owns what the throwaway database servers of
// plugins/postgres/postgresd and plugins/mysql/mariadbd share: a free
// loopback port, the tail of a server's log, the server's random password,
// and the temporary folders those servers run in, which a test binary that
// panicked or was killed leaves behind and the next start removes.
//
// A temporary folder made by MkdirTemp holds a lock file, locked (flock)
// for as long as the process that made it keeps the folder: the kernel
// drops the lock when that process ends, however it ends. Sweep removes a
// folder only when its lock is free and the caller says its server is not
// alive, so the folders of servers other test binaries run at the same
// time are never touched.
package dbserver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
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
	f, err := os.Open(path)
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
// there is none.
func ReadPassword(path string) string {
	b, err := os.ReadFile(path)
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
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return pw, nil
}

// LockFile is the name of the lock file in a folder made by MkdirTemp.
const LockFile = "owner.lock"

// TempDir is a folder made by MkdirTemp, locked by this process until
// Release.
type TempDir struct {
	Path string
	lock *os.File
}

// MkdirTemp makes a fresh folder os.TempDir()/prefix* (mode 0700) and
// locks it for this process.
func MkdirTemp(prefix string) (*TempDir, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
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
// half made), it is older than Fresh. A folder whose lock file this process
// cannot open is not abandoned: it is not ours to judge.
func Abandoned(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
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

// Sweep removes the folders os.TempDir()/prefix* for which leftover
// returns true, and returns those it removed. Errors are ignored: a folder
// that cannot be removed stays for a later sweep, or for its owner.
func Sweep(prefix string, leftover func(dir string) bool) []string {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	var removed []string
	for _, dir := range matches {
		if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
			continue
		}
		if leftover(dir) && os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}
