package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/schema"
)

// SessionOptions say which plugins a Session starts.
type SessionOptions struct {
	// Dir is the playbook folder: it holds upshift.lock.hcl, and relative
	// paths in that file are relative to it.
	Dir string
	// Requirements are the plugins the playbook uses, each with the
	// resources it serves (Requirement.Resources).
	Requirements []Requirement
	// RequireLock makes a missing lock file, or a plugin missing from it,
	// an error, as for a run. Otherwise (validate, plan, graph) a plugin
	// the lock file does not pin starts no process and is checked against
	// its kind's contract, and one that is not known at all (no trusted
	// folder has it, the lock file does not name it, and upshift does not
	// ship it) is reported by Schema, with the closest known name.
	RequireLock bool
	// Logger receives the plugins' log lines; nil uses hclog's default.
	Logger hclog.Logger
	// Parallelism caps how many plugins start at once; 0 means 4.
	Parallelism int
}

// Session owns the plugin processes of one command: it reads the lock file,
// finds each pinned plugin's binary in the trusted folders, starts one
// instance per resource under its pinned checksum, checks each plugin's
// version against the playbook's constraint, answers for the plugins'
// schemas, configures each resource's instance, and ends them all
// (Close). Nothing in the playbook folder is ever started. Without a lock
// file (and without RequireLock) it starts nothing and answers with the
// kinds' contracts.
type Session struct {
	dir    string
	pinned bool
	// unknown holds, by plugin name, why a plugin that is not pinned is
	// not known either.
	unknown map[string]error
	// contract holds the plugins that are known but not pinned: their
	// kind's contract stands for their schema.
	contract  map[string]bool
	resources []*ResourcePlugin // sorted by address
	byAddr    map[string]*ResourcePlugin
	schemas   map[string]*schema.PluginSchema // by plugin name

	closeOnce sync.Once
}

// ResourcePlugin is the plugin instance that serves one resource.
type ResourcePlugin struct {
	// Address is the resource's address, "node_pool.cluster".
	Address string
	// Plugin is the plugin's name in the playbook.
	Plugin string
	// SHA256 is the checksum the binary was started under.
	SHA256 string
	// Instance is the running plugin.
	Instance *Process
}

// OpenSession starts the plugins opts.Requirements name, one process per
// resource, a few at a time. On any error every plugin it started is
// ended before it returns.
func OpenSession(ctx context.Context, opts SessionOptions) (*Session, error) {
	s := &Session{dir: opts.Dir, byAddr: map[string]*ResourcePlugin{}, schemas: map[string]*schema.PluginSchema{}, unknown: map[string]error{}, contract: map[string]bool{}}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.L()
	}
	lf, err := ReadLockFile(filepath.Join(opts.Dir, LockFileName))
	switch {
	case err == nil:
		s.pinned = true
	case opts.RequireLock || !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w; run `upshift init %s` to pin the plugins this playbook uses", err, opts.Dir)
	default:
		lf = &LockFile{}
	}
	if len(lf.IgnoredPaths) > 0 {
		logger.Warn(fmt.Sprintf("%s gives a path for %s: paths in a lock file are ignored, plugins are found only in the trusted plugin folders; run `upshift init %s` to rewrite it",
			filepath.Join(opts.Dir, LockFileName), strings.Join(lf.IgnoredPaths, ", "), opts.Dir))
	}
	// Every binary is resolved before any starts: a plugin missing from the
	// lock file costs no process.
	type start struct {
		rp   *ResourcePlugin
		spec LaunchSpec
		req  Requirement
	}
	var starts []start
	var known []string // for suggestions; filled once needed
	for _, req := range opts.Requirements {
		if lf.Plugin(req.Name) == nil && !opts.RequireLock {
			if err := s.checkKnown(req, lf, &known); err != nil {
				s.unknown[req.Name] = err
			} else {
				s.contract[req.Name] = true
			}
			continue
		}
		spec, err := lf.LaunchSpec(req, logger)
		if err != nil {
			return nil, err
		}
		for _, addr := range req.Resources {
			if s.byAddr[addr] != nil {
				return nil, fmt.Errorf("resource %s is served by two plugins, %s and %s", addr, s.byAddr[addr].Plugin, req.Name)
			}
			rp := &ResourcePlugin{Address: addr, Plugin: req.Name, SHA256: spec.SHA256}
			s.byAddr[addr] = rp
			starts = append(starts, start{rp, spec, req})
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].rp.Address < starts[j].rp.Address })

	n := opts.Parallelism
	if n <= 0 {
		n = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, n)
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for _, st := range starts {
		s.resources = append(s.resources, st.rp)
	}
	// Starts begin in address order, at most n at a time; after a failure
	// no more begin.
	for _, st := range starts {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			inst, err := launch(ctx, st.spec)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			st.rp.Instance = inst
			mu.Unlock()
			// The playbook may have tightened its constraint since init.
			if err := CheckVersion(st.req.Name, inst.Version(), st.req.Version); err != nil {
				fail(fmt.Errorf("%w; change the plugin block or install a matching plugin, then run `upshift init`", err))
				return
			}
			sch, err := inst.Schema(ctx)
			if err != nil {
				fail(fmt.Errorf("plugin %s: %w", st.req.Name, err))
				return
			}
			mu.Lock()
			s.schemas[st.req.Name] = sch
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		_ = s.Close()
		return nil, firstErr
	}
	return s, nil
}

// checkKnown returns an error when plugin r, which the lock file does not
// pin, is not known either: no trusted folder has it (Resolve) and upshift
// does not ship it. The error suggests the closest known name: shipped,
// installed or pinned. Nothing is started.
func (s *Session) checkKnown(r Requirement, lf *LockFile, known *[]string) error {
	_, err := Resolve(r)
	if err == nil {
		return nil
	}
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		return err // a source that is a path, a binary refused: say why
	}
	if r.Source == "" || r.Source == BinaryName(r.Name) {
		for _, n := range StandardPlugins {
			if n == r.Name {
				return nil
			}
		}
	}
	if *known == nil {
		*known = append(append([]string{}, StandardPlugins...), Installed()...)
		for _, p := range lf.Plugins {
			*known = append(*known, p.Name)
		}
	}
	msg := fmt.Sprintf("unknown plugin %q: no trusted plugin folder has %s and %s does not name it", r.Name, BinaryFor(r.Name, r.Source), LockFileName)
	if sug := Suggest(r.Name, *known); sug != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", sug)
	}
	return &UnknownPluginError{msg: fmt.Sprintf("%s; the plugin folders are %s, and $%s adds more", msg, strings.Join(TrustedDirs(), ", "), PluginPathEnv)}
}

// UnknownPluginError: a playbook names a plugin that no trusted folder
// has, the lock file does not name and upshift does not ship (a typo,
// most often). Summary gives the diagnostic its title.
type UnknownPluginError struct{ msg string }

func (e *UnknownPluginError) Error() string { return e.msg }

// Summary is the title of the diagnostic that reports it.
func (e *UnknownPluginError) Summary() string { return "Unknown plugin" }

// Pinned reports whether the session found a lock file; false means it
// started nothing and answers with the kinds' contracts.
func (s *Session) Pinned() bool { return s.pinned }

// Schema returns the schema of plugin for a resource of kind: the running
// plugin's own when the lock file pins it, else the kind's contract, or an
// error for a plugin that is not known (see SessionOptions.RequireLock).
// It fits playbooks.SchemaSource once adapted to its *Plugin argument,
// which turns the error into a diagnostic at the resource's plugin
// attribute.
func (s *Session) Schema(plugin string, kind schema.Kind) (*schema.PluginSchema, error) {
	if err := s.unknown[plugin]; err != nil {
		return nil, err
	}
	if sch := s.schemas[plugin]; sch != nil {
		return sch, nil
	}
	if s.contract[plugin] {
		return schema.ContractPlugin(kind), nil
	}
	return nil, fmt.Errorf("plugin %s is not pinned in %s; run `upshift init %s`", plugin, LockFileName, s.dir)
}

// Configure configures the instance serving resource addr with its config
// and nodes. Sensitive marks are removed: the plugin needs the values. The
// error names the resource and its plugin.
func (s *Session) Configure(ctx context.Context, addr string, req plugins.ConfigureRequest) error {
	rp := s.byAddr[addr]
	if rp == nil || rp.Instance == nil {
		return fmt.Errorf("configuring %s: no plugin was started for it", addr)
	}
	req.Config, _ = req.Config.UnmarkDeep()
	req.Nodes, _ = req.Nodes.UnmarkDeep()
	if d := rp.Instance.Configure(ctx, req); d.HasErrors() {
		return fmt.Errorf("configuring %s (plugin %s): %w", addr, rp.Plugin, d.Err())
	}
	return nil
}

// Resources lists the resources' plugin instances, sorted by address; empty
// when the session is not pinned.
func (s *Session) Resources() []ResourcePlugin {
	out := make([]ResourcePlugin, len(s.resources))
	for i, rp := range s.resources {
		out[i] = *rp
	}
	return out
}

// Providers returns each resource's instance by address, for the runner.
func (s *Session) Providers() map[string]plugins.Provider {
	out := make(map[string]plugins.Provider, len(s.resources))
	for _, rp := range s.resources {
		out[rp.Address] = rp.Instance
	}
	return out
}

// Close ends every plugin process the session started and waits for each to
// exit. Safe to call more than once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, rp := range s.resources {
			if rp.Instance != nil {
				wg.Go(func() { _ = rp.Instance.Close() })
			}
		}
		wg.Wait()
	})
	return nil
}
