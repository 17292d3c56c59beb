package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclsimple"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/zclconf/go-cty/cty"
)

// LockFileName is the lock file's name, next to the playbook.
const LockFileName = "upshift.lock.hcl"

// LockFile pins each plugin a playbook uses to one binary:
//
//	plugin "haproxy" {
//	  version = "0.1.0"
//	  path    = "bin/upshift-plugin-haproxy"
//	  sha256  = "9f86d0..."
//	}
//
// A relative path is relative to the lock file's folder.
type LockFile struct {
	Plugins []*LockedPlugin `hcl:"plugin,block"`
}

// LockedPlugin is one plugin's entry.
type LockedPlugin struct {
	Name    string `hcl:"name,label"`
	Version string `hcl:"version"`
	Path    string `hcl:"path"`
	SHA256  string `hcl:"sha256"`
}

// Checksum is the hex SHA-256 of the file at path, as the lock file holds
// it.
func Checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadLockFile reads a lock file. A missing file is an error that wraps
// fs.ErrNotExist; a malformed one is reported with file and line.
func ReadLockFile(path string) (*LockFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lf LockFile
	if err := hclsimple.Decode(filepath.Base(path), src, nil, &lf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, p := range lf.Plugins {
		if seen[p.Name] {
			return nil, fmt.Errorf("%s: plugin %q is listed twice", path, p.Name)
		}
		seen[p.Name] = true
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s: plugin %q: sha256 is not a hex SHA-256", path, p.Name)
		}
	}
	return &lf, nil
}

// Plugin returns the entry for name, or nil.
func (l *LockFile) Plugin(name string) *LockedPlugin {
	for _, p := range l.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Set adds or replaces the entry for p.Name.
func (l *LockFile) Set(p *LockedPlugin) {
	for i, q := range l.Plugins {
		if q.Name == p.Name {
			l.Plugins[i] = p
			return
		}
	}
	l.Plugins = append(l.Plugins, p)
}

// Bytes renders the lock file (entries sorted by name, hclwrite
// formatting).
func (l *LockFile) Bytes() []byte {
	ps := append([]*LockedPlugin(nil), l.Plugins...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	body.AppendUnstructuredTokens(hclwrite.Tokens{{Type: hclsyntax.TokenComment, Bytes: []byte("# Written by `upshift init`: the plugin binaries this playbook runs, pinned by checksum.\n")}})
	for i, p := range ps {
		if i > 0 {
			body.AppendNewline()
		}
		b := body.AppendNewBlock("plugin", []string{p.Name}).Body()
		b.SetAttributeValue("version", cty.StringVal(p.Version))
		b.SetAttributeValue("path", cty.StringVal(p.Path))
		b.SetAttributeValue("sha256", cty.StringVal(p.SHA256))
	}
	return f.Bytes()
}

// WriteFile writes the lock file atomically (fsutil.WriteFile: a crash
// never leaves half a lock file).
func (l *LockFile) WriteFile(path string) error {
	return fsutil.WriteFile(path, l.Bytes(), 0o644)
}

// LaunchSpec returns what Launch needs for plugin name, resolving a
// relative path against dir (the lock file's folder). A plugin missing from
// the lock file is an error that says to run `upshift init`.
func (l *LockFile) LaunchSpec(dir, name string, logger hclog.Logger) (LaunchSpec, error) {
	p := l.Plugin(name)
	if p == nil {
		return LaunchSpec{}, fmt.Errorf("plugin %s is not in %s; run `upshift init`", name, LockFileName)
	}
	path := p.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	return LaunchSpec{Name: name, Path: path, SHA256: p.SHA256, Logger: logger}, nil
}

// lockPath is how the lock file records path: relative to dir when the
// binary lives under it (so a checked-in .upshift/plugins travels with the
// playbook), absolute otherwise.
func lockPath(dir, path string) string {
	absDir, err1 := filepath.Abs(dir)
	abs, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	if rel, err := filepath.Rel(absDir, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return rel
	}
	return abs
}

var errNoPlugins = errors.New("no plugins to lock")
