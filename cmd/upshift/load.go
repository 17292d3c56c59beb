package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/schema"
)

// varFlags are the flags every command that loads a playbook takes.
type varFlags struct {
	vars     []string
	varFiles []string
}

func (v *varFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&v.vars, "var", nil, "set a variable: -var 'name=value' (repeatable)")
	cmd.Flags().StringArrayVar(&v.varFiles, "var-file", nil, "read variables from an .hcl or .json file (repeatable)")
}

// loadMode says what load needs of the plugins.
type loadMode int

const (
	// withContracts uses the plugins pinned in the lock file when there is
	// one, and the kinds' standard contracts otherwise (validate, plan,
	// graph); a plugin nobody provides is a diagnostic. Either way only
	// binaries of the trusted plugin folders start (host.TrustedDirs),
	// never one of the playbook folder.
	withContracts loadMode = iota
	// withPlugins requires the lock file (run).
	withPlugins
)

// loaded is a checked playbook, its graph and plan, and the plugins it was
// checked against, still running: Close ends them.
type loaded struct {
	pb      *playbooks.Playbook
	graph   *runner.Graph
	plan    *runner.Plan
	plugins *host.Session
	// logFile, when set, receives the plugins' logs; Close closes it
	// after them.
	logFile *os.File
}

// parse is the first phase of loading a playbook (every file read once),
// which names the plugins it needs. Errors go to stderr, and an invalid
// playbook is exitError{1}; warnings are returned for the caller to print
// with its own.
func parse(cmd *cobra.Command, dir string, vf varFlags) (*playbooks.Parsed, hcl.Diagnostics, error) {
	p := playbooks.NewParser()
	parsed, diags := p.Parse(dir, playbooks.LoadOptions{Vars: vf.vars, VarFiles: vf.varFiles})
	if diags.HasErrors() {
		printDiagnostics(cmd.ErrOrStderr(), p.Files(), diags)
		return nil, nil, exitError{exitInvalid}
	}
	return parsed, diags, nil
}

// requirements are the plugins a parsed playbook uses, as host wants them.
func requirements(parsed *playbooks.Parsed) []host.Requirement {
	var reqs []host.Requirement
	for _, r := range parsed.Requirements() {
		reqs = append(reqs, host.Requirement{Name: r.Plugin.Name, Source: r.Plugin.Source, Version: r.Plugin.Version, Resources: r.Resources})
	}
	return reqs
}

// load reads and checks a playbook the one way every command does: parse
// it (each file once), start the plugins pinned in DIR/upshift.lock.hcl,
// found in the trusted plugin folders only (host.Session; the kinds'
// contracts when there is no lock file and mode allows it), decode it against their schemas, vendor actions and config
// included, then build its graph and plan, which decodes every step's
// arguments. Diagnostics go to stderr; an invalid playbook is
// exitError{1}. The caller closes the result, which ends the plugins; on an
// error they are already ended.
func load(cmd *cobra.Command, dir string, vf varFlags, mode loadMode, logger hclog.Logger) (*loaded, error) {
	parsed, diags, err := parse(cmd, dir, vf)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: cmd.ErrOrStderr(), Level: hclog.Warn})
	}
	s, err := host.OpenSession(cmd.Context(), host.SessionOptions{Dir: dir, Requirements: requirements(parsed), RequireLock: mode == withPlugins, Logger: logger})
	if err != nil {
		return nil, runError(cmd, err)
	}
	l := &loaded{plugins: s}
	pb, ds := parsed.Decode(func(pl *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
		return s.Schema(pl.Name, kind)
	})
	diags = append(diags, ds...)
	l.pb = pb
	if !diags.HasErrors() {
		l.graph, ds = runner.BuildGraph(pb)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			l.plan, ds = runner.MakePlan(l.graph)
			diags = append(diags, ds...)
		}
	}
	if len(diags) > 0 {
		printDiagnostics(cmd.ErrOrStderr(), parsed.Files(), diags)
	}
	if diags.HasErrors() {
		_ = s.Close()
		return nil, exitError{exitInvalid}
	}
	return l, nil
}

// configure configures each resource's plugin with its config and nodes.
func (l *loaded) configure(ctx context.Context) error {
	for _, addr := range l.pb.ResourceNames() {
		r := l.pb.Resources[addr]
		if err := l.plugins.Configure(ctx, addr, plugins.ConfigureRequest{Config: r.Config, Nodes: r.Nodes}); err != nil {
			return err
		}
	}
	return nil
}

// pluginInfos says which plugin binary serves each resource, for the
// journal.
func (l *loaded) pluginInfos() map[string]runner.PluginInfo {
	infos := map[string]runner.PluginInfo{}
	for _, r := range l.plugins.Resources() {
		infos[r.Address] = runner.PluginInfo{Name: r.Plugin, Checksum: r.SHA256}
	}
	return infos
}

// Close ends the plugins (and closes their log).
func (l *loaded) Close() error {
	err := l.plugins.Close()
	if l.logFile != nil {
		_ = l.logFile.Close()
	}
	return err
}
