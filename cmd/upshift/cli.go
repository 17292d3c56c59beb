package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/playbooks"
)

// Exit codes, documented in docs/running.md; automation relies on them.
const (
	exitOK        = 0 // done, or nothing to do
	exitInvalid   = 1 // invalid playbook (or plugins missing or not as pinned)
	exitUsage     = 2
	exitPreflight = 3 // a preflight (nothing changed) or verify check found a problem
	exitFailed    = 4 // the run failed: a step failed, or the run could not go on
	exitStopped   = 5 // paused (on_failure = "pause") or stopped by a signal: resume with upshift run
	exitLocked    = 6 // another run holds the lock
	exitRefused   = 7 // refused by the state folder (another cluster's journal, an older journal): nothing changed
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
		newCheckCommand(),
		newVerifyCommand(),
		newRunCommand(),
		newApproveCommand(),
		newStatusCommand(),
		newReportCommand(),
		newStateCommand(),
		newAbortCommand(),
		newLabCommand(),
		newPluginsCommand(),
	)
	return root
}

func printDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	cwd, _ := os.Getwd()
	_ = playbooks.WriteDiagnostics(w, files, safeDiagnostics(diags), cwd, isTerminal(w))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd()) && os.Getenv("NO_COLOR") == ""
}
