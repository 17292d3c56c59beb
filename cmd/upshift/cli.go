package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/schema"
)

// Exit codes.
const (
	exitOK      = 0
	exitInvalid = 1 // invalid playbook, or a run that failed
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// normalizeArgs lets long flags be written with one dash, as Terraform
// users do (-var-file x); cobra wants two. upshift has no one-letter flags
// but -h, so any -word is a long flag.
func normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 2 {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(normalizeArgs(args))
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "Error: %s\n", err)
		fmt.Fprintf(stderr, "Run 'upshift --help' for usage.\n")
		return exitUsage
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "upshift",
		Short: "Rolling upgrades of clustered platforms, without downtime",
		Long: `upshift runs rolling upgrades of a clustered platform behind a load balancer
from declarative HCL playbooks, through plugins for each load balancer,
database and kind of node.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newValidateCommand(),
		newPlanCommand(),
		newGraphCommand(),
		newFmtCommand(),
		newInitCommand(),
		newRunCommand(),
		newStatusCommand(),
		newAbortCommand(),
		newLabCommand(),
		newPluginsCommand(),
	)
	return root
}

// varFlags are the flags every command that loads a playbook takes.
type varFlags struct {
	vars     []string
	varFiles []string
}

func (v *varFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&v.vars, "var", nil, "set a variable: -var 'name=value' (repeatable)")
	cmd.Flags().StringArrayVar(&v.varFiles, "var-file", nil, "read variables from an .hcl or .json file (repeatable)")
}

// loaded is a playbook with everything needed to report on it and, when it
// was loaded with its plugins, to run it.
type loaded struct {
	dir   string
	pb    *playbooks.Playbook
	graph *runner.Graph
	plan  *runner.Plan
	files map[string]*hcl.File
	// providers are the launched plugin instances by resource address, and
	// infos describe them; both empty when only the kinds' contracts were
	// used.
	providers map[string]plugins.Provider
	infos     map[string]runner.PluginInfo
}

// loadMode says how load finds plugin schemas.
type loadMode int

const (
	// withContracts uses the plugins pinned in the lock file when there is
	// one, and the kinds' standard contracts otherwise (validate, plan).
	withContracts loadMode = iota
	// withPlugins requires the lock file and keeps the plugins running
	// (run).
	withPlugins
)

// load reads and checks a playbook, builds its graph and plan, printing
// diagnostics to stderr. The files are parsed once (playbooks.Parser.Parse),
// which names the plugins; when DIR/upshift.lock.hcl pins them they are
// started (checksum verified) and the playbook is decoded against their own
// schemas, vendor actions and config included; without a lock file the
// kinds' contracts are used. It returns exitError{1} when the playbook is
// invalid. Launched plugins end with host.CleanupAll.
func load(cmd *cobra.Command, dir string, vf varFlags, mode loadMode, logger hclog.Logger) (*loaded, error) {
	opts := playbooks.LoadOptions{Vars: vf.vars, VarFiles: vf.varFiles}
	l := &loaded{dir: dir, providers: map[string]plugins.Provider{}, infos: map[string]runner.PluginInfo{}}

	p := playbooks.NewParser()
	parsed, diags := p.Parse(dir, opts)
	l.files = p.Files()
	if diags.HasErrors() {
		printDiagnostics(cmd.ErrOrStderr(), l.files, diags)
		return nil, exitError{exitInvalid}
	}
	lf, err := host.ReadLockFile(filepath.Join(dir, host.LockFileName))
	switch {
	case err == nil:
		schemas, err := l.launch(cmd, lf, parsed.Requirements(), logger)
		if err != nil {
			return nil, runError(cmd, err)
		}
		opts.Schemas = func(pl *playbooks.Plugin, kind schema.Kind) (*schema.Plugin, error) {
			if s := schemas[pl.Name]; s != nil {
				return s, nil
			}
			return nil, fmt.Errorf("plugin %s is not pinned in %s; run `upshift init %s`", pl.Name, host.LockFileName, dir)
		}
	case mode == withPlugins || !errors.Is(err, fs.ErrNotExist):
		return nil, runError(cmd, fmt.Errorf("%w; run `upshift init %s` to pin the plugins this playbook uses", err, dir))
	}

	pb, ds := parsed.Decode(opts.Schemas)
	diags = append(diags, ds...)
	l.pb = pb
	if !diags.HasErrors() {
		var ds hcl.Diagnostics
		l.graph, ds = runner.BuildGraph(pb)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			// Decoding every step's arguments is what finds a wrong or
			// missing argument.
			l.plan, ds = runner.MakePlan(l.graph)
			diags = append(diags, ds...)
		}
	}
	if len(diags) > 0 {
		printDiagnostics(cmd.ErrOrStderr(), l.files, diags)
	}
	if diags.HasErrors() {
		return nil, exitError{exitInvalid}
	}
	return l, nil
}

// launch starts one plugin instance per resource, with the checksum pinned
// in the lock file, and returns each plugin's schema by plugin name.
func (l *loaded) launch(cmd *cobra.Command, lf *host.LockFile, reqs []playbooks.Requirement, logger hclog.Logger) (map[string]*schema.Plugin, error) {
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: cmd.ErrOrStderr(), Level: hclog.Warn})
	}
	schemas := map[string]*schema.Plugin{}
	for _, req := range reqs {
		pl := req.Plugin
		for _, addr := range req.Resources {
			spec, err := lf.LaunchSpec(l.dir, pl.Name, logger)
			if err != nil {
				return nil, err
			}
			p, err := host.Launch(cmd.Context(), spec)
			if err != nil {
				return nil, err
			}
			// The playbook may have tightened its constraint since init.
			if inst, ok := p.(*host.Instance); ok {
				if err := host.CheckVersion(pl.Name, inst.Version(), pl.Version); err != nil {
					return nil, fmt.Errorf("%w; change the plugin block or install a matching plugin, then run `upshift init`", err)
				}
			}
			sch, err := p.Schema(cmd.Context())
			if err != nil {
				return nil, fmt.Errorf("plugin %s: %w", pl.Name, err)
			}
			l.providers[addr] = p
			l.infos[addr] = runner.PluginInfo{Name: pl.Name, Checksum: spec.SHA256}
			schemas[pl.Name] = sch
		}
	}
	return schemas, nil
}

func printDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	cwd, _ := os.Getwd()
	_ = playbooks.WriteDiagnostics(w, files, diags, cwd, isTerminal(w))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd()) && os.Getenv("NO_COLOR") == ""
}
