package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

func newCheckCommand() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Run the playbook's preflight checks alone, changing nothing",
		Long: `check runs the playbook's preflight blocks through its plugins, all at once,
and reports every problem found: the load balancer answers and knows each
server, min_in_service can hold; the database answers with the privileges
backup and copy need, B is absent (or this run's), the backup folder has
room; every node is reachable, runs as the plugin knows it, and is healthy
on one version. Nothing is changed and no lock is taken. upshift run runs
the same checks before a new run begins and refuses to begin on a problem.

Exit codes: 0 every check passed, 1 invalid playbook, 2 usage, 3 a check
found a problem.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return checkPlaybook(cmd, args[0], rf) },
	}
	rf.vars.register(cmd)
	cmd.Flags().StringVar(&rf.state, "state-dir", "", "state folder, to find the cluster's unfinished run (default DIR/.upshift/state)")
	cmd.Flags().IntVar(&rf.parallelism, "parallelism", defaultParallelism, "most checks running at once")
	return cmd
}

func checkPlaybook(cmd *cobra.Command, dir string, rf runFlags) error {
	out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	state := stateDir(dir, rf.state)
	l, err := loadLogged(cmd, dir, state, rf)
	if err != nil {
		return err
	}
	defer l.Close()
	if len(l.graph.Preflights) == 0 {
		fmt.Fprintf(out, "The playbook in %s has no preflight blocks: nothing to check.\n", dir)
		return nil
	}
	// run.id is the unfinished run's, when there is one, so that a copy
	// this run made counts as its own; else that of a run not begun.
	cluster := runner.Identify(l.pb)
	runID := runner.NewRunID(time.Now())
	if store, err := journal.OpenStore(state); err == nil {
		if cur, err := store.Current(cluster); err == nil && cur != nil && cur.Resumable() {
			runID = cur.ID
			fmt.Fprintf(stderr, "Cluster %s has an unfinished run %s (%s): its checks describe a cluster halfway through; `upshift run` resumes it without them.\n", cluster.Label(), cur.ID, cur.Status)
		}
	}
	l.pb.SetRunID(runID)
	if err := l.configure(cmd.Context()); err != nil {
		return failed(cmd, err)
	}
	rep := runner.Preflight(cmd.Context(), l.graph, l.plugins.Providers(), nil, rf.parallelism)
	writeProbeReport(out, l.graph.Preflights, rep)
	if !rep.OK() {
		fmt.Fprintln(out, "Nothing was changed.")
		return exitError{exitPreflight}
	}
	return nil
}

// loadLogged loads the playbook with its plugins, their logs going to the
// run log in the state folder (the terminal is for the report).
func loadLogged(cmd *cobra.Command, dir, state string, rf runFlags) (*loaded, error) {
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, runError(cmd, err)
	}
	logFile, err := os.OpenFile(filepath.Join(state, journal.LogName), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, runError(cmd, err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: logFile, Level: hclog.Debug})
	l, err := load(cmd, dir, rf.vars, withPlugins, logger)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	l.logFile = logFile
	return l, nil
}

// writeProbeReport prints one line per probe instance, ok or FAIL with
// every problem it found, then the count.
func writeProbeReport(out io.Writer, insts []*runner.StepInstance, rep *runner.ProbeReport) {
	failedAt := map[string]runner.PreflightFailure{}
	for _, f := range rep.Failures {
		failedAt[f.Address] = f
	}
	for _, inst := range insts {
		if f, bad := failedAt[inst.Addr]; bad {
			fmt.Fprintf(out, "  FAIL  %s (%s)\n        %s\n", inst.Addr, f.Action, strings.ReplaceAll(termtext.Block(f.Error), "\n", "\n        "))
			continue
		}
		fmt.Fprintf(out, "  ok    %s (%s)\n", inst.Addr, inst.Step.Run)
		for _, w := range rep.Warnings[inst.Addr] {
			fmt.Fprintf(out, "        warning: %s\n", strings.ReplaceAll(termtext.Block(w), "\n", "\n        "))
		}
	}
	if !rep.OK() {
		fmt.Fprintf(out, "\n%d of %d checks found problems (%s). ", len(rep.Failures), rep.Checked, rep.Duration.Round(time.Millisecond))
		return
	}
	fmt.Fprintf(out, "\nAll %d checks passed (%s).\n", rep.Checked, rep.Duration.Round(time.Millisecond))
}
