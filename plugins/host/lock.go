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

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclsimple"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/zclconf/go-cty/cty"
)

// LockFileName is the lock file's name, next to the playbook.
const LockFileName = "upshift.lock.hcl"

// LockFile pins each plugin a playbook uses to one binary, by name,
// version and checksum:
//
//	plugin "haproxy" {
//	  version = "0.1.0"
//	  sha256  = "9f86d0..."
//	}
//
// It says nothing of where the binary is: a lock file comes with the
// playbook, from whoever wrote it, and a path in it would let them choose
// what upshift runs. Binaries are found in the trusted folders
// (TrustedDirs) and started only when they hash to the pinned checksum.
type LockFile struct {
	Plugins []*LockedPlugin
	// IgnoredPaths names the plugins whose entry had a path, as lock files
	// written before paths were dropped do: the path is ignored, and a
	// Session warns once so the file gets rewritten by `upshift init`.
	IgnoredPaths []string
}

// LockedPlugin is one plugin's entry.
type LockedPlugin struct {
	Name    string
	Version string
	// Path is where Init found the binary, for its report; it is not
	// written to the lock file, and is empty in one that was read.
	Path   string
	SHA256 string
}

// lockFileHCL is the lock file's syntax; path is accepted (and ignored)
// so that old lock files still load.
type lockFileHCL struct {
	Plugins []struct {
		Name    string  `hcl:"name,label"`
		Version string  `hcl:"version"`
		Path    *string `hcl:"path,optional"`
		SHA256  string  `hcl:"sha256"`
	} `hcl:"plugin,block"`
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
	var raw lockFileHCL
	if err := hclsimple.Decode(filepath.Base(path), src, nil, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var lf LockFile
	seen := map[string]bool{}
	for _, r := range raw.Plugins {
		p := &LockedPlugin{Name: r.Name, Version: r.Version, SHA256: r.SHA256}
		if err := validName(p.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if r.Path != nil {
			lf.IgnoredPaths = append(lf.IgnoredPaths, p.Name)
		}
		lf.Plugins = append(lf.Plugins, p)
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
	body.AppendUnstructuredTokens(hclwrite.Tokens{{Type: hclsyntax.TokenComment, Bytes: []byte("# Written by `upshift init`: the plugins this playbook runs, pinned by version and checksum.\n")}})
	for i, p := range ps {
		if i > 0 {
			body.AppendNewline()
		}
		b := body.AppendNewBlock("plugin", []string{p.Name}).Body()
		b.SetAttributeValue("version", cty.StringVal(p.Version))
		b.SetAttributeValue("sha256", cty.StringVal(p.SHA256))
	}
	return f.Bytes()
}

// WriteFile writes the lock file atomically (fsutil.WriteFile: a crash
// never leaves half a lock file).
func (l *LockFile) WriteFile(path string) error {
	return fsutil.WriteFile(path, l.Bytes(), 0o644)
}

// LaunchSpec returns what Launch needs for the required plugin r: its
// binary found in the trusted folders (Resolve) and the checksum pinned
// for it. A plugin missing from the lock file is an error that says to run
// `upshift init`.
func (l *LockFile) LaunchSpec(r Requirement, logger hclog.Logger) (LaunchSpec, error) {
	p := l.Plugin(r.Name)
	if p == nil {
		return LaunchSpec{}, fmt.Errorf("plugin %s is not in %s; run `upshift init`", r.Name, LockFileName)
	}
	path, err := Resolve(r)
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return LaunchSpec{}, fmt.Errorf("%w\n(%s pins plugin %s; upshift looks for its binary only in the trusted plugin folders)", err, LockFileName, r.Name)
	}
	if err != nil {
		return LaunchSpec{}, err
	}
	return LaunchSpec{Name: r.Name, Path: path, SHA256: p.SHA256, Logger: logger}, nil
}

var errNoPlugins = errors.New("no plugins to lock")
