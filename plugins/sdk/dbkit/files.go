package dbkit

import (
	"errors"
	"io/fs"
	"os"
)

// Backups and copies hold every row of database A: they are created 0600
// in folders created 0700, whatever A's mode or the plugin's umask.
const (
	FileMode   fs.FileMode = 0o600
	FolderMode fs.FileMode = 0o700
)

// CreatePrivate makes path an empty file of mode 0600, replacing a file
// left there (not following a link in its place), so that a tool that
// writes into an existing file (pg_dump --file, a redirect) keeps it
// private.
func CreatePrivate(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, FileMode)
	if err != nil {
		return err
	}
	if err := f.Chmod(FileMode); err != nil { // whatever the umask
		f.Close()
		return err
	}
	return f.Close()
}
