package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

// What rollback needs: set_config's value read back and put back, touch's
// marker removed (only the one it made).
var (
	_ nodekit.ConfigReader[*localnode.Node] = driver{}
	_ nodekit.Remover[*localnode.Node]      = driver{}
	_ nodekit.Exister[*localnode.Node]      = driver{}
)

func (driver) ReadConfig(_ context.Context, n *localnode.Node, key string) (string, bool, error) {
	b, err := os.ReadFile(n.ConfigFile)
	if err != nil {
		return "", false, err
	}
	v, ok, err := nodekit.ConfigValue(b, key)
	if err != nil {
		return "", false, fmt.Errorf("config file %s: %w", n.ConfigFile, err)
	}
	return v, ok, nil
}

func (driver) RestoreConfig(_ context.Context, n *localnode.Node, key, value string, ok bool) (bool, error) {
	b, err := os.ReadFile(n.ConfigFile)
	if err != nil {
		return false, err
	}
	out, changed, err := nodekit.RestoreConfigValue(b, key, value, ok)
	if err != nil || !changed {
		return false, err
	}
	return true, fsutil.WriteFile(n.ConfigFile, out, 0o600)
}

// inRoot opens the node's data folder as an os.Root and gives p relative
// to it: what is resolved through it cannot leave the folder by a link.
func inRoot(n *localnode.Node, p string) (*os.Root, string, error) {
	rel, err := filepath.Rel(n.DataDir, p)
	if err != nil {
		return nil, "", err
	}
	root, err := os.OpenRoot(n.DataDir)
	if err != nil {
		return nil, "", err
	}
	return root, rel, nil
}

// named is err about the path p, as the operator knows it (absolute), not
// as the os.Root saw it (relative, after a syscall's name).
func named(p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", p, err)
}

func (driver) Exists(_ context.Context, n *localnode.Node, p string) (bool, error) {
	root, rel, err := inRoot(n, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer root.Close()
	_, err = root.Lstat(rel)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, named(p, err)
}

func (driver) Remove(_ context.Context, n *localnode.Node, p string) (bool, error) {
	root, rel, err := inRoot(n, p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, named(p, err)
	case !fi.Mode().IsRegular():
		return false, nodekit.NotAFile(p, fi.Mode())
	}
	if err := root.Remove(rel); err != nil {
		return false, named(p, err)
	}
	return true, nil
}
