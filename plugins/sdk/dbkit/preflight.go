package dbkit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
)

// Sizer is implemented by a database that can tell A's size, which
// preflight compares with the room in the backup folder.
type Sizer interface {
	Size(ctx context.Context) (int64, error)
}

// PrivilegeChecker is implemented by a database that can tell whether the
// connecting user may do what backup and copy need; it returns what is
// missing, each as a sentence saying what to grant.
type PrivilegeChecker interface {
	MissingPrivileges(ctx context.Context) ([]string, error)
}

// preflight checks, changing nothing, that backup and copy can run; it
// reports every problem at once.
func preflight(ctx context.Context, r *sdk.Request, d Database) (cty.Value, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	info, err := d.Check(ctx, &sdk.Request{Action: "check", Args: cty.EmptyObjectVal, Logger: r.Logger})
	if err != nil {
		return cty.NilVal, fmt.Errorf("the database does not answer: %w", err)
	}
	name := info.GetAttr("name").AsString()

	if pc, ok := d.(PrivilegeChecker); ok {
		missing, err := pc.MissingPrivileges(ctx)
		if err != nil {
			add("cannot tell the connecting user's privileges: %s", err)
		}
		problems = append(problems, missing...)
	}

	if to := r.String("to"); to != "" {
		args := cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(to), "run_id": nullOr(r.String("run_id")), "replace": cty.NullVal(cty.Bool)})
		res, err := d.CheckCopy(ctx, &sdk.Request{Action: "copy", Args: args, Logger: r.Logger})
		switch {
		case err != nil:
			add("copy target %s: %s", to, err)
		case res.State == plugins.CheckUnknown:
			add("copy target: %s; drop it, or give copy replace = true if it may go", res.Detail)
		}
	}

	size := int64(-1)
	if sz, ok := d.(Sizer); ok {
		n, err := sz.Size(ctx)
		if err != nil {
			add("cannot tell the size of %s: %s", name, err)
		} else {
			size = n
		}
	}
	if dir := r.String("backup_dir"); dir != "" {
		free, at, err := freeSpace(dir)
		switch {
		case err != nil:
			add("backup folder %s: %s", dir, err)
		case size >= 0 && free < uint64(size):
			add("backup folder %s: %s free on %s, %s needs about %s", dir, bytes(int64(free)), at, name, bytes(size))
		}
	}
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	return Result(r, map[string]cty.Value{"name": cty.StringVal(name), "size_bytes": cty.NumberIntVal(size)})
}

func nullOr(s string) cty.Value {
	if s == "" {
		return cty.NullVal(cty.String)
	}
	return cty.StringVal(s)
}

// freeSpace is the room left for a new file under dir: on dir, or on its
// nearest existing parent (backup makes the folders), which must be a
// folder we may write in.
func freeSpace(dir string) (uint64, string, error) {
	at := filepath.Clean(dir)
	for {
		fi, err := os.Stat(at)
		if err == nil {
			if !fi.IsDir() {
				return 0, at, fmt.Errorf("%s is not a folder", at)
			}
			break
		}
		// A file on the way (ENOTDIR) is found, and named, one level up.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return 0, at, err
		}
		parent := filepath.Dir(at)
		if parent == at {
			return 0, at, err
		}
		at = parent
	}
	if err := syscall.Access(at, 2 /* W_OK */); err != nil {
		return 0, at, fmt.Errorf("%s cannot be written to: %w", at, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(at, &st); err != nil {
		return 0, at, err
	}
	return st.Bavail * uint64(st.Bsize), at, nil
}

func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
