package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"

	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

// What rollback needs over SFTP: set_config's value read back and put
// back, touch's marker removed (only the one it made).
var (
	_ nodekit.ConfigReader[*node]   = driver{}
	_ nodekit.Remover[*node]        = driver{}
	_ nodekit.Exister[*node]        = driver{}
	_ nodekit.RunningChecker[*node] = driver{}
)

// Running tells whether the node runs as the plugin knows it: its
// status_command exits 0, or its pid file names a live process of its
// command. preflight reports a node that does not (one started by hand
// cannot be stopped by stop), and start and stop answer Check with it.
func (driver) Running(ctx context.Context, n *node) (bool, error) { return n.running(ctx) }

func readRemote(fs *sftp.Client, file string) ([]byte, os.FileInfo, error) {
	f, err := fs.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	b, err := io.ReadAll(f)
	return b, info, err
}

func (driver) ReadConfig(ctx context.Context, n *node, key string) (string, bool, error) {
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return "", false, err
	}
	defer fs.Close()
	b, _, err := readRemote(fs.Client, n.ConfigFile)
	if err != nil {
		return "", false, err
	}
	v, ok, err := nodekit.ConfigValue(b, key)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", n.ConfigFile, err)
	}
	return v, ok, nil
}

func (driver) RestoreConfig(ctx context.Context, n *node, key, value string, ok bool) (bool, error) {
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return false, err
	}
	defer fs.Close()
	b, info, err := readRemote(fs.Client, n.ConfigFile)
	if err != nil {
		return false, err
	}
	out, changed, err := nodekit.RestoreConfigValue(b, key, value, ok)
	if err != nil || !changed {
		return false, err
	}
	return true, replaceRemote(fs.Client, n.ConfigFile, info, out, n.host.user == "root")
}

// lstatInside lstats p, a path inside the data folder, checking that no
// folder on the way from the data folder is a link: what it finds is in
// the folder, not wherever a link points.
func lstatInside(fs *sftp.Client, dataDir, p string) (os.FileInfo, error) {
	rel := strings.TrimPrefix(p, strings.TrimSuffix(path.Clean(dataDir), "/")+"/")
	parts := strings.Split(rel, "/")
	cur := path.Clean(dataDir)
	for i, part := range parts {
		cur = path.Join(cur, part)
		fi, err := fs.Lstat(cur)
		if err != nil {
			return nil, err
		}
		if i < len(parts)-1 && !fi.IsDir() {
			return nil, fmt.Errorf("%s is %s, not a folder: refusing to go through it", cur, nodekit.Kind(fi.Mode()))
		}
	}
	return fs.Lstat(p)
}

func (driver) Exists(ctx context.Context, n *node, p string) (bool, error) {
	sfs, err := n.host.sftp(ctx)
	if err != nil {
		return false, err
	}
	defer sfs.Close()
	_, err = lstatInside(sfs.Client, n.DataDir, p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

func (driver) Remove(ctx context.Context, n *node, p string) (bool, error) {
	sfs, err := n.host.sftp(ctx)
	if err != nil {
		return false, err
	}
	defer sfs.Close()
	fi, err := lstatInside(sfs.Client, n.DataDir, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, nodekit.NotAFile(p, fi.Mode())
	}
	if err := sfs.Remove(p); err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	return true, nil
}
