package host

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-version"
)

// Requirement is a plugin a playbook uses: its name and, when the playbook
// gives one, its source: the binary's file name instead of
// upshift-plugin-NAME (BinaryFor). A source that is a path is refused.
type Requirement struct {
	Name   string
	Source string
	// Version constrains the plugin's own version ("~> 1.2"); empty
	// accepts any.
	Version string
	// Resources are the addresses of the resources the plugin serves; a
	// Session starts one instance for each. Init does not use them.
	Resources []string
}

// Init is `upshift init`: for each required plugin it finds the binary in
// the trusted folders (Resolve), computes its checksum, launches it once
// under that checksum to learn its version and check it is a valid
// upshift plugin, and writes <dir>/upshift.lock.hcl with exactly these
// plugins (sorted by name): name, version and checksum, no path. The
// returned entries carry the path each binary was found at. Every plugin is tried; the error lists each failure,
// and no lock file is written unless all succeeded.
func Init(ctx context.Context, dir string, reqs []Requirement, logger hclog.Logger) (*LockFile, error) {
	if len(reqs) == 0 {
		return nil, errNoPlugins
	}
	sorted := append([]Requirement(nil), reqs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	lf := &LockFile{}
	var errs []error
	for _, r := range sorted {
		if lf.Plugin(r.Name) != nil {
			errs = append(errs, fmt.Errorf("plugin %s is required twice", r.Name))
			continue
		}
		p, err := lockOne(ctx, r, logger)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lf.Set(p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := lf.WriteFile(filepath.Join(dir, LockFileName)); err != nil {
		return nil, err
	}
	return lf, nil
}

func lockOne(ctx context.Context, r Requirement, logger hclog.Logger) (*LockedPlugin, error) {
	path, err := Resolve(r)
	if err != nil {
		return nil, err
	}
	sum, err := Checksum(path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", r.Name, err)
	}
	inst, err := launch(ctx, LaunchSpec{Name: r.Name, Path: path, SHA256: sum, Logger: logger})
	if err != nil {
		return nil, err
	}
	defer inst.Close()
	if err := CheckVersion(r.Name, inst.Version(), r.Version); err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return &LockedPlugin{Name: r.Name, Version: inst.Version(), Path: path, SHA256: sum}, nil
}

// CheckVersion reports a plugin whose own version does not meet the
// playbook's constraint. It runs at `upshift init` and again whenever a
// run launches the plugin, since the playbook may change after init.
func CheckVersion(name, have, constraint string) error {
	if strings.TrimSpace(constraint) == "" {
		return nil
	}
	c, err := version.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("plugin %s: invalid version constraint %q: %w", name, constraint, err)
	}
	v, err := version.NewVersion(have)
	if err != nil {
		return fmt.Errorf("plugin %s reports version %q, which is not a version, so it cannot meet %q", name, have, constraint)
	}
	if !c.Check(v) {
		return fmt.Errorf("plugin %s is version %s, but the playbook requires %s", name, have, constraint)
	}
	return nil
}
