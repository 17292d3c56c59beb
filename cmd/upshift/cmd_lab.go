package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/internal/lab"
)

type labFlags struct {
	dir   string
	bin   string
	db    string
	lb    string
	nodes string
	// affinity: session affinity at the load balancer (default on).
	affinity bool
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", "lab", "the lab's folder")
	cmd.Flags().StringVar(&f.lb, "lb", "haproxy", "load balancer in front (up, demo): haproxy or nginx")
	cmd.Flags().StringVar(&f.nodes, "nodes", "process", "how the playbook reaches the nodes (up, demo): process, or ssh through an sshd on loopback")
	cmd.Flags().StringVar(&f.db, "db", "sqlite", "database under the nodes (up, demo): sqlite, or postgres or mysql (a server of the lab's own, in its folder; UPSHIFT_LAB_POSTGRES / UPSHIFT_LAB_MYSQL name another)")
	cmd.Flags().BoolVar(&f.affinity, "affinity", true, "session affinity at the load balancer (up, demo): HAProxy cookie persistence, nginx hash on platformd's session cookie; --affinity=false balances every request")
	cmd.Flags().StringVar(&f.bin, "bin", "", "folder of platformd and the plugins (default: the folder of this upshift)")
}

func (f *labFlags) options() lab.Options {
	return lab.Options{Dir: f.dir, Bin: f.binDir(), Database: f.db, LoadBalancer: f.lb, NodePlugin: f.nodes, NoAffinity: !f.affinity}
}

func (f *labFlags) binDir() string {
	if f.bin != "" {
		return f.bin
	}
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Dir(exe)
}

func newLabCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "lab",
		Short: "A local 3-node platform behind HAProxy, to try upgrades on",
	}
	var f labFlags
	up := &cobra.Command{
		Use:   "up",
		Short: "Start 3 platformd nodes (version 1) behind a real HAProxy, and write the playbook's variables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.UpWith(cmd.Context(), f.options(), cmd.OutOrStdout())
			if err != nil {
				return runError(cmd, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Lab up. Try: upshift plan playbooks/rolling-upgrade -var-file %s\n", s.VarsFile())
			return nil
		},
	}
	f.register(up)
	var df labFlags
	var purge bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop everything the lab started (its files stay unless --purge)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.Load(df.dir)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "No lab in %s.\n", df.dir)
				return nil
			}
			if err != nil {
				return runError(cmd, err)
			}
			if err := lab.Down(s, cmd.OutOrStdout()); err != nil {
				return runError(cmd, err)
			}
			if purge {
				return lab.Purge(s)
			}
			return nil
		},
	}
	df.register(down)
	down.Flags().BoolVar(&purge, "purge", false, "also delete the lab's folder")
	var sf labFlags
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each node's process, health, version and read-only mode, and HAProxy's view",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.Load(sf.dir)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "No lab in %s: `upshift lab up --dir %s` starts one.\n", sf.dir, sf.dir)
				return nil
			}
			if err != nil {
				return runError(cmd, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Lab in %s, front door %s\n", s.Dir, s.URL())
			return s.Inspect(cmd.Context()).Write(cmd.OutOrStdout())
		},
	}
	sf.register(status)
	root.AddCommand(up, down, status, newLabDemoCommand())
	return root
}

type demoFlags struct {
	labFlags
	playbook    string
	warmup      time.Duration
	workers     int
	durationCap time.Duration
	runCmd      string
	state       string
}

func newLabDemoCommand() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Upgrade a fresh lab from version 1 to 2 with the shipped playbook under live traffic, and report",
		Long: `demo starts a fresh lab (stopping and deleting an earlier one in the same
folder), pins the plugins, starts a traffic check through HAProxy (slow and
fast reads, writes), runs the playbook, checks that every acknowledged write
is still there and that every node ended on version 2 and in rotation, then
prints the verdict and writes an HTML report. It exits 0 only with zero
failed requests, zero lost writes and every final check passing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.state != "" && f.state != stateLocal && f.state != statePostgres {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: --state is %q or %q, not %q.\n", stateLocal, statePostgres, f.state)
				return exitError{exitUsage}
			}
			self, err := os.Executable()
			if err != nil {
				return runError(cmd, err)
			}
			ok, err := lab.Demo(cmd.Context(), lab.DemoOptions{Options: f.options(), Upshift: self, Playbook: f.playbook,
				Warmup: f.warmup, Workers: f.workers, DurationCap: f.durationCap, RunCmd: f.runCmd, State: f.state}, cmd.OutOrStdout())
			switch {
			case err != nil:
				return runError(cmd, err)
			case !ok:
				return exitError{exitInvalid}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.playbook, "playbook", "playbooks/rolling-upgrade", "the playbook to run")
	cmd.Flags().DurationVar(&f.warmup, "warmup", 2*time.Second, "traffic before the upgrade starts (and after it ends)")
	cmd.Flags().IntVar(&f.workers, "workers", 8, "concurrent traffic clients")
	cmd.Flags().DurationVar(&f.durationCap, "duration-cap", 2*time.Minute, "stop the run (and fail) if the upgrade takes longer")
	cmd.Flags().StringVar(&f.state, "state", "", "where upshift keeps the run's state: local (the lab's playbook copy) or postgres (a PostgreSQL of the lab's own in DIR/state-postgres, as a team's shared one)")
	// A stand-in for `upshift run`, for testing the orchestration: it is
	// given the same arguments (run <playbook> -var-file <vars> --json).
	cmd.Flags().StringVar(&f.runCmd, "run-cmd", "", "command to run instead of this upshift (space-separated argv)")
	_ = cmd.Flags().MarkHidden("run-cmd")
	return cmd
}
