// Package fsutil owns the one way plugins replace a file on disk: atomically
// (a reader sees the old file or the new one, whole; a crash leaves one of
// them), keeping the replaced file's mode and owner, and leaving no
// temporary file behind. Vendor plugins (the process plugin's pid and config
// files, nginx's upstream file, HAProxy's server-state file, testkit's
// counters) and the demo lab all write through it.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data through a temporary file in the same
// folder, synced, then renamed over path. An existing file keeps its mode
// and, where the writer may give a file away (as root), its owner: a config
// holding a password is replaced by one as private, still readable by the
// service's user. A new file gets perm. The temporary name starts with a dot
// and ends in random digits, so no `include *.conf` picks it up.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, false)
}

// WriteFileMode is WriteFile with the mode perm whatever the replaced file's
// was (its owner is still kept): for files that must end up private.
func WriteFileMode(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, true)
}

func write(path string, data []byte, perm fs.FileMode, forceMode bool) error {
	uid, gid := -1, -1
	// Lstat: a symbolic link in path's place is replaced by the rename, never
	// followed, and the file it points at lends neither mode nor owner.
	if old, err := os.Lstat(path); err == nil && old.Mode().IsRegular() {
		if !forceMode {
			perm = old.Mode().Perm()
		}
		if st, ok := old.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".upshift-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, UnwrapPath(err))
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil && uid >= 0 {
		err = os.Chown(tmp, uid, gid)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, UnwrapPath(err))
	}
	// The rename itself is durable only once the folder is synced: a
	// crash could otherwise bring back the old file after the new one
	// was reported written.
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("writing %s: %w", path, UnwrapPath(err))
	}
	return nil
}

// SyncDir makes a rename or a new file in dir durable. A file system that
// cannot sync folders (EINVAL) is not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// UnwrapPath drops an *fs.PathError or *os.LinkError wrapper whose path
// the caller's message already names (or, for the temporary file, does not
// need), so a message says each path once.
func UnwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
