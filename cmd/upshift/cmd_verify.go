package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/runner"
)

func newVerifyCommand() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check the cluster's end state through the plugins, changing nothing",
		Long: `verify runs the playbook's verify blocks through its plugins, all at once,
and reports every problem found. The shipped playbook's ask the load
balancer whether every node is in rotation and up, and each node whether it
runs the target version, takes writes, has its rolling-upgrade marker, and
uses the same database as the others (values compared, never shown).

Nothing is changed and no lock is taken, so verify can run at any time, on
any cluster the variables describe: after upshift run (which runs the same
checks once the run has finished), after an upgrade done by hand, or to
find what a run that stopped left behind.

Exit codes: 0 every check passed, 1 invalid playbook, 2 usage, 3 a check
found a problem.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return verifyPlaybook(cmd, args[0], rf) },
	}
	rf.vars.register(cmd)
	cmd.Flags().StringVar(&rf.state, "state-dir", "", "state folder, where the plugins' log goes (default DIR/.upshift/state)")
	cmd.Flags().IntVar(&rf.parallelism, "parallelism", defaultParallelism, "most checks running at once")
	return cmd
}

func verifyPlaybook(cmd *cobra.Command, dir string, rf runFlags) error {
	out := cmd.OutOrStdout()
	l, err := loadLogged(cmd, dir, stateDir(dir, rf.state), rf)
	if err != nil {
		return err
	}
	defer l.Close()
	if len(l.graph.Verifies) == 0 {
		fmt.Fprintf(out, "The playbook in %s has no verify blocks: nothing to check.\n", dir)
		return nil
	}
	if err := l.configure(cmd.Context()); err != nil {
		return failed(cmd, err)
	}
	return reportVerify(cmd, l, rf.parallelism)
}

// reportVerify runs the verify blocks of a loaded, configured playbook
// and prints what they found; a problem is exitError{3}.
func reportVerify(cmd *cobra.Command, l *loaded, parallelism int) error {
	out := cmd.OutOrStdout()
	rep := runner.Verify(cmd.Context(), l.graph, l.plugins.Providers(), nil, parallelism)
	writeProbeReport(out, l.graph.Verifies, rep)
	if !rep.OK() {
		fmt.Fprintln(out, "The cluster is not in the state the playbook ends in.")
		return exitError{exitPreflight}
	}
	return nil
}

// verifyAfterRun checks the end state once a run has finished every step
// (not a canary run of one --target item, which ends with the rest of the
// cluster on X by design): the playbook's verify blocks, as `upshift
// verify` runs them. With --json the report is left to `upshift verify`,
// so the event stream stays one JSON object per line. A problem is exit 3:
// every step succeeded, yet the cluster is not as the playbook says it
// ends, which an operator must hear before calling the upgrade done.
func verifyAfterRun(cmd *cobra.Command, l *loaded, dir string, rf runFlags) error {
	if rf.target != "" || rf.asJSON || len(l.graph.Verifies) == 0 {
		return nil
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "\nVerify, the end state through the plugins:\n")
	if err := reportVerify(cmd, l, rf.parallelism); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "\nEvery step succeeded, but the end state is not the playbook's: see the problems above. `%s` checks it again once they are dealt with.\n", commandWith("verify", dir, rf.vars, l.pb))
		return err
	}
	return nil
}
