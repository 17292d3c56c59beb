package host

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// UntrustedError is a plugin binary, or a folder on the way to it, that
// someone other than root or the user running upshift could change: it is
// writable by its group or by others (a folder with the sticky bit, such as
// /tmp, is fine: others cannot replace what is in it), or it is owned by
// another user. upshift runs as root against production clusters, so such
// a binary is never started.
type UntrustedError struct {
	// Path is the file or folder at fault.
	Path string
	// Mode is its permission bits.
	Mode fs.FileMode
	// Dir is true when Path is a folder.
	Dir bool
	// Owner is its owner's uid when that is the problem, else -1.
	Owner int
}

func (e *UntrustedError) Error() string {
	what := "plugin binary"
	if e.Dir {
		what = "folder"
	}
	if e.Owner >= 0 {
		return fmt.Sprintf("%s %s is owned by %s, not by root or by the user running upshift (uid %d), who alone may change a plugin; run: chown root %s",
			what, e.Path, ownerName(e.Owner), os.Geteuid(), e.Path)
	}
	by := "its group and others"
	switch {
	case e.Mode&0o022 == 0o020:
		by = "its group"
	case e.Mode&0o022 == 0o002:
		by = "others"
	}
	want := e.Mode.Perm() &^ 0o022
	return fmt.Sprintf("%s %s is writable by %s (mode %04o); run: chmod %04o %s", what, e.Path, by, e.Mode.Perm(), want, e.Path)
}

func ownerName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// CheckTrusted returns an *UntrustedError when the file at path, or any
// folder from it up to /, could be changed by a user other than root or
// the one running upshift. Symbolic links are followed, and both the
// link's folders and the target's are checked.
func CheckTrusted(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	if err := trustedEntry(real, st); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, p := range []string{real, abs} {
		for d := filepath.Dir(p); !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			// A folder on the way to a link may itself be a link: the
			// folders it resolves to are checked with real's.
			st, err := os.Stat(d)
			if err != nil {
				return err
			}
			if err := trustedEntry(d, st); err != nil {
				return err
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}

// trustedEntry checks one file or folder's owner and mode.
func trustedEntry(path string, st fs.FileInfo) error {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if uid := int(sys.Uid); uid != 0 && uid != os.Geteuid() {
			return &UntrustedError{Path: path, Mode: st.Mode(), Dir: st.IsDir(), Owner: uid}
		}
	}
	if st.Mode().Perm()&0o022 == 0 {
		return nil
	}
	if st.IsDir() && st.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	return &UntrustedError{Path: path, Mode: st.Mode(), Dir: st.IsDir(), Owner: -1}
}
