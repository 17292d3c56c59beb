package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

var _ nodekit.Purger[*node] = driver{}

// Purge empties a folder of the node's data folder over SFTP: the path to
// it is looked at component by component with lstat (lstatInside), the
// folder itself must not be a link, and RemoveAll lstats what it removes,
// so a link inside is removed, not followed.
func (driver) Purge(ctx context.Context, n *node, p string) (int, bool, error) {
	sfs, err := n.host.sftp(ctx)
	if err != nil {
		return 0, false, err
	}
	defer sfs.Close()
	fi, err := lstatInside(sfs.Client, n.DataDir, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	case fi.Mode()&os.ModeSymlink != 0:
		return 0, false, fmt.Errorf("%s is a symbolic link; upshift does not purge through one", p)
	case !fi.IsDir():
		return 0, false, fmt.Errorf("%s is %s, not a folder", p, nodekit.Kind(fi.Mode()))
	}
	entries, err := sfs.ReadDir(p)
	if err != nil {
		return 0, true, fmt.Errorf("%s: %w", p, err)
	}
	removed := 0
	for _, e := range entries {
		if err := sfs.RemoveAll(path.Join(p, e.Name())); err != nil {
			return removed, true, fmt.Errorf("%s: %w", path.Join(p, e.Name()), err)
		}
		removed++
	}
	return removed, true, nil
}
