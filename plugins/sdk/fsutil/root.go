package fsutil

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Inside reports whether path (absolute, clean or not) names something
// strictly inside folder, and returns its path relative to folder. It is a
// lexical test; OpenIn is what keeps links from leading out.
func Inside(folder, path string) (string, bool) {
	rel, err := filepath.Rel(filepath.Clean(folder), filepath.Clean(path))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}

// OpenIn opens path, which must be inside folder, through an os.Root on
// folder: no component of path (a symbolic link the node's own process
// planted, a folder swapped for a link) can lead out of folder, whatever
// the plugin's privileges. Missing parent folders are made with dirPerm
// when flag has O_CREATE.
func OpenIn(folder, path string, flag int, perm, dirPerm fs.FileMode) (*os.File, error) {
	rel, ok := Inside(folder, path)
	if !ok {
		return nil, fmt.Errorf("%s is not inside %s", path, folder)
	}
	root, err := os.OpenRoot(folder)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if flag&os.O_CREATE != 0 {
		if dir := filepath.Dir(rel); dir != "." {
			if err := root.MkdirAll(dir, dirPerm); err != nil {
				return nil, escapeError(path, folder, err)
			}
		}
	}
	f, err := root.OpenFile(rel, flag, perm)
	if err != nil {
		return nil, escapeError(path, folder, err)
	}
	return f, nil
}

// OpenNoFollow opens path for writing (flag) without following a symbolic
// link: through OpenIn when path is inside one of folders, else with
// O_NOFOLLOW on its last component (a pid or log file the configuration
// puts elsewhere).
func OpenNoFollow(path string, folders []string, flag int, perm fs.FileMode) (*os.File, error) {
	for _, d := range folders {
		if d == "" {
			continue
		}
		if _, ok := Inside(d, path); ok {
			return OpenIn(d, path, flag, perm, 0o700)
		}
	}
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link; upshift does not write through one", path)
	}
	return f, err
}

func escapeError(path, folder string, err error) error {
	if strings.Contains(err.Error(), "escapes from parent") || errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%s leads out of %s through a symbolic link; upshift does not follow it", path, folder)
	}
	return err
}

// WriteFileIn is WriteFile for a path that may be inside folder: there, the
// temporary file and the rename go through an os.Root on folder, so neither
// follows a link out of it. Elsewhere it is WriteFile.
func WriteFileIn(folder, path string, data []byte, perm fs.FileMode) error {
	rel, ok := Inside(folder, path)
	if folder == "" || !ok {
		return WriteFile(path, data, perm)
	}
	root, err := os.OpenRoot(folder)
	if err != nil {
		return err
	}
	defer root.Close()
	dir := filepath.Dir(rel)
	if dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return escapeError(path, folder, err)
		}
	}
	var buf [8]byte
	_, _ = randRead(buf[:])
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.upshift-%x", filepath.Base(rel), buf))
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return escapeError(path, folder, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, escapeError(path, folder, UnwrapPath(err)))
	}
	return nil
}

var randRead = rand.Read

// BackupMarker is the file upshift leaves in a data folder's backup, saying
// the folder is a backup it made and may replace.
const BackupMarker = ".upshift-backup"

// CheckBackupTarget says whether backup_data may write (and replace) to,
// a copy of dataDir: never /, nor the data folder, a folder holding it or
// one inside it; and inside root when the plugin's config declares a
// backup root. An existing to is replaced only when it holds BackupMarker
// (the caller checks, where to lives).
func CheckBackupTarget(to, root, dataDir string) error {
	if !filepath.IsAbs(to) {
		return fmt.Errorf("%q must be an absolute path", to)
	}
	clean := filepath.Clean(to)
	if clean == "/" {
		return errors.New("the backup cannot be / (upshift replaces what it names)")
	}
	if dataDir != "" {
		d := filepath.Clean(dataDir)
		if clean == d {
			return fmt.Errorf("%q is the data folder itself", to)
		}
		if _, in := Inside(clean, d); in {
			return fmt.Errorf("%q holds the data folder %s", to, d)
		}
		if _, in := Inside(d, clean); in {
			return fmt.Errorf("%q is inside the data folder %s", to, d)
		}
	}
	if root != "" {
		if _, in := Inside(root, clean); !in {
			return fmt.Errorf("%q is not inside the backup root %s the plugin's config declares", to, filepath.Clean(root))
		}
	}
	return nil
}
