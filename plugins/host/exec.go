package host

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrChecksumMismatch is wrapped by the error of a launch whose binary does
// not hash to the checksum it was pinned with.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// privateCopy is a verified copy of a plugin binary, in a folder of its own
// that only this user can write to. The process is started from the copy,
// so what runs is exactly what was hashed: the file at the original path
// may change at any moment (go-plugin's own check hashes the path and then
// starts the path again, and a swap in between ran an unpinned binary).
type privateCopy struct {
	path string
	dir  string
}

// remove deletes the copy and its folder. A process started from it keeps
// running: it holds the file, not its name.
func (c *privateCopy) remove() { _ = os.RemoveAll(c.dir) }

// copyVerified reads the binary at path once, through one open file,
// writing every byte into a new private folder while hashing the same
// bytes, and returns the copy when they hash to sum. The binary and every
// folder on the way to it must pass CheckTrusted.
func copyVerified(path string, sum []byte) (*privateCopy, error) {
	if err := CheckTrusted(path); err != nil {
		return nil, err
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// What was opened, not what the name pointed at a moment ago.
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := trustedEntry(path, st); err != nil {
		return nil, err
	}
	base, err := execBase()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(base, "upshift-plugin-") // 0700, ours
	if err != nil {
		return nil, err
	}
	c := &privateCopy{dir: dir, path: filepath.Join(dir, filepath.Base(path))}
	h := sha256.New()
	if err := writeExecutable(c.path, src, h); err != nil {
		c.remove()
		return nil, fmt.Errorf("copying %s: %w", path, err)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		c.remove()
		return nil, ErrChecksumMismatch
	}
	return c, nil
}

// copyChunk is how much of a binary is read, hashed and written at a time:
// one buffer, reused, so a 15 MB binary costs a few dozen system calls and
// no 15 MB allocation (whose first touch, page by page, cost more than the
// hashing on a virtual machine).
const copyChunk = 1 << 20

// writeExecutable writes what it reads from r to a new file at path, mode
// 0500, and into h: each chunk hashed is the chunk written. It holds
// syscall.ForkLock for reading while the file is open for writing, so no
// process forked meanwhile inherits the descriptor: a child holding it
// until its own exec would make executing the copy fail with "text file
// busy".
func writeExecutable(path string, r io.Reader, h hash.Hash) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
	if err != nil {
		return err
	}
	buf := make([]byte, copyChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	return f.Close()
}

// ExecDirEnv names a folder for the private copies plugins are started
// from, when the usual places do not do (all mounted noexec, say).
const ExecDirEnv = "UPSHIFT_PLUGIN_EXEC_DIR"

// execBase is the folder private copies are made in: $UPSHIFT_PLUGIN_EXEC_DIR
// when set, else the first of the temporary folder, $XDG_RUNTIME_DIR and
// the user's cache folder that exists, passes CheckTrusted and is not on a
// file system mounted noexec.
func execBase() (string, error) {
	if d := os.Getenv(ExecDirEnv); d != "" {
		if err := usableExecDir(d); err != nil {
			return "", fmt.Errorf("%s=%s: %w", ExecDirEnv, d, err)
		}
		return d, nil
	}
	cands := []string{os.TempDir(), os.Getenv("XDG_RUNTIME_DIR"), "cache"}
	var why []string
	for _, d := range cands {
		if d == "" {
			continue
		}
		if d == "cache" { // made only when needed
			c, err := os.UserCacheDir()
			if err != nil {
				continue
			}
			d = filepath.Join(c, "upshift")
			if err := os.MkdirAll(d, 0o700); err != nil {
				why = append(why, fmt.Sprintf("%s: %v", d, err))
				continue
			}
		}
		err := usableExecDir(d)
		if err == nil {
			return d, nil
		}
		why = append(why, fmt.Sprintf("%s: %v", d, err))
	}
	return "", fmt.Errorf("no folder to start plugins from (set %s to a folder only you can write to, on a file system that allows executing): %s", ExecDirEnv, strings.Join(why, "; "))
}

func usableExecDir(d string) error {
	if !filepath.IsAbs(d) {
		return errors.New("not an absolute path")
	}
	st, err := os.Stat(d)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("not a folder")
	}
	if err := CheckTrusted(d); err != nil {
		return err
	}
	if mountedNoexec(d) {
		return errors.New("mounted noexec")
	}
	return nil
}

// pluginEnvNames are the variables a plugin process inherits from
// upshift's environment; go-plugin adds its own (the handshake cookie,
// ports, protocol versions, the client certificate). Everything else,
// UPSHIFT_VAR_* (which may hold secrets) included, stays out: a plugin gets
// what it needs through its config and arguments.
var pluginEnvNames = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SSH_AUTH_SOCK"}

// PluginEnv filters environ (os.Environ's form) down to what a plugin
// process may see: pluginEnvNames and LC_*.
func PluginEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if strings.HasPrefix(k, "LC_") {
			out = append(out, kv)
			continue
		}
		for _, n := range pluginEnvNames {
			if k == n {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}
