package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pkg/sftp"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
)

// envName is what a variable's name may be: it travels in a shell word.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envScript is what the step guard reads from the session's stdin and
// evaluates before the command: `export NAME='value'` lines. The values
// never appear on the remote command line (ps, sshd's logs, the shell's
// audit), only in the session's encrypted stream.
func envScript(env map[string]string) (string, error) {
	names := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("environment variable name %q is not a shell name", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString("export " + k + "=" + quote(env[k]) + "\n")
	}
	s := b.String()
	return strconv.Itoa(len(s)) + "\n" + s, nil
}

// inData returns the components of p from the data folder down, when p is
// inside it: each is checked for a link on the node's host.
func (n *node) components(p string) []string {
	rel, ok := fsutil.Inside(n.DataDir, p)
	if !ok {
		return []string{path.Clean(p)}
	}
	var out []string
	cur := path.Clean(n.DataDir)
	for _, c := range strings.Split(rel, "/") {
		cur = path.Join(cur, c)
		out = append(out, cur)
	}
	return out
}

// noLinks is a shell test that fails (exit 3, naming it) when any of the
// paths is a symbolic link: the node's process may plant one in its data
// folder to send a write of upshift's (as root) elsewhere.
func noLinks(paths ...string) string {
	var q []string
	for _, p := range paths {
		q = append(q, quote(p))
	}
	return "for p in " + strings.Join(q, " ") + "; do if [ -L \"$p\" ]; then echo \"upshift: $p is a symbolic link; upshift does not write through one\" >&2; exit 3; fi; done; "
}

// touchRemote creates p (inside the data folder) and its folders over
// SFTP, looking at each component with lstat: a symbolic link anywhere
// below the data folder is refused, not followed.
func touchRemote(fs *sftp.Client, dataDir, p string) error {
	rel, ok := fsutil.Inside(dataDir, p)
	if !ok {
		return fmt.Errorf("%s is not inside the data folder %s", p, dataDir)
	}
	cur := path.Clean(dataDir)
	parts := strings.Split(rel, "/")
	for i, c := range parts {
		cur = path.Join(cur, c)
		last := i == len(parts)-1
		st, err := fs.Lstat(cur)
		switch {
		case err == nil && st.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; upshift does not follow it", cur)
		case err == nil && !last && !st.IsDir():
			return fmt.Errorf("%s is not a folder", cur)
		case err == nil && last:
			return nil // exists: touch changes nothing
		case !errors.Is(err, fs2NotExist):
			return fmt.Errorf("%s: %w", cur, err)
		case !last:
			if err := fs.Mkdir(cur); err != nil {
				return fmt.Errorf("%s: %w", cur, err)
			}
		default:
			// O_EXCL: a link planted since the lstat makes it fail.
			f, err := fs.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY)
			if err != nil {
				return fmt.Errorf("%s: %w", cur, err)
			}
			return f.Close()
		}
	}
	return nil
}

var fs2NotExist = fs.ErrNotExist

// privateDir makes a new folder of mode 0700 in parent, for a temporary
// file.
func privateDir(fs *sftp.Client, parent string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	dir := path.Join(parent, ".upshift-"+hex.EncodeToString(b[:]))
	if err := fs.Mkdir(dir); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := fs.Chmod(dir, 0o700); err != nil {
		_ = fs.RemoveDirectory(dir)
		return "", fmt.Errorf("making %s private: %w", dir, err)
	}
	return dir, nil
}
