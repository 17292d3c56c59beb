package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"

	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

func newInitCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Find the plugins a playbook uses and pin their checksums in DIR/upshift.lock.hcl",
		Long: `init finds each plugin the playbook names (its plugin block's source, then
DIR/.upshift/plugins, the folder of the upshift binary, ./bin, then PATH),
starts it once to check it is a valid upshift plugin, and writes its path,
version and SHA-256 to DIR/upshift.lock.hcl. upshift run starts only binaries
whose checksum matches that file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			// Only the plugins are needed: their schemas, and so the
			// playbook's vendor actions, are known once they are pinned.
			parsed, diags, err := parse(cmd, dir, vf)
			if err != nil {
				return err
			}
			if len(diags) > 0 {
				printDiagnostics(cmd.ErrOrStderr(), parsed.Files(), diags)
			}
			logger := hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: cmd.ErrOrStderr(), Level: hclog.Warn})
			lf, err := host.Init(cmd.Context(), dir, requirements(parsed), logger)
			if err != nil {
				return runError(cmd, err)
			}
			out := cmd.OutOrStdout()
			for _, p := range lf.Plugins {
				fmt.Fprintf(out, "  %-10s %-8s %s  sha256:%s\n", p.Name, p.Version, p.Path, p.SHA256[:16])
			}
			fmt.Fprintf(out, "Wrote %s.\n", filepath.Join(dir, host.LockFileName))
			return nil
		},
	}
	vf.register(cmd)
	return cmd
}

type runFlags struct {
	vars        varFlags
	state       string
	parallelism int
	asJSON      bool
	rerun       []string
	again       bool
}

func newRunCommand() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:     "run DIR",
		Aliases: []string{"resume"},
		Short:   "Run a playbook, or resume its interrupted run (alias: resume)",
		Long: `run executes the playbook's steps through its plugins, recording each step
in DIR/.upshift/state before and after it runs. If the last run did not
finish, run resumes it: steps already done are not run again. Only one run
at a time may use a state folder. Ctrl-C once stops starting new steps and
lets running ones finish; twice cancels them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlaybook(cmd, args[0], rf)
		},
	}
	rf.vars.register(cmd)
	cmd.Flags().StringVar(&rf.state, "state-dir", "", "journal and lock folder (default DIR/.upshift/state)")
	cmd.Flags().IntVar(&rf.parallelism, "parallelism", 10, "most steps running at once")
	cmd.Flags().BoolVar(&rf.asJSON, "json", false, "print one JSON event per line instead of the console view")
	cmd.Flags().StringArrayVar(&rf.rerun, "rerun", nil, "allow a step found in flight after a crash to run again (repeatable)")
	cmd.Flags().BoolVar(&rf.again, "again", false, "run again although the same playbook and variables already ran to completion")
	return cmd
}

func runPlaybook(cmd *cobra.Command, dir string, rf runFlags) error {
	stderr := cmd.ErrOrStderr()
	state := stateDir(dir, rf.state)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return runError(cmd, err)
	}
	// The lock comes first: nothing, not even a plugin's start, touches the
	// environment while another run holds it.
	lock, err := journal.Acquire(state, journal.CurrentOwner(""))
	if err != nil {
		return runError(cmd, err)
	}
	defer lock.Release()
	if prev, stale := lock.TakenOver(); stale {
		fmt.Fprintf(stderr, "Warning: took over a stale lock left by %s.\n", prev)
	}

	logPath := filepath.Join(state, "upshift.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return runError(cmd, err)
	}
	defer logFile.Close()
	logger := hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: logFile, Level: hclog.Debug})

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	stop := make(chan struct{})
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		n := 0
		for range signals {
			n++
			if n == 1 {
				fmt.Fprintln(stderr, "Stopping: no new step will start; running steps finish. Interrupt again to cancel them.")
				close(stop)
				continue
			}
			fmt.Fprintln(stderr, "Cancelling running steps.")
			cancel()
			return
		}
	}()
	l, err := load(cmd, dir, rf.vars, withPlugins, logger)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.configure(ctx); err != nil {
		return runError(cmd, err)
	}

	j, err := journal.Open(state)
	if err != nil {
		return runError(cmd, err)
	}
	defer j.Close()
	console := NewConsoleSink(cmd.OutOrStdout())
	console.Live = isTerminal(cmd.OutOrStdout())
	var sink runner.Sink = console
	if rf.asJSON {
		sink = runner.NewJSONSink(cmd.OutOrStdout())
	}
	res, err := runner.Run(ctx, l.graph, runner.Options{
		Providers:   l.plugins.Providers(),
		Plugins:     l.pluginInfos(),
		Journal:     j,
		Events:      sink,
		Parallelism: rf.parallelism,
		Stop:        stop,
		Digest:      digest(l.pb),
		Rerun:       rf.rerun,
		Again:       rf.again,
	})
	switch {
	case errors.Is(err, runner.ErrRunFailed):
		if !rf.asJSON {
			fmt.Fprintf(stderr, "\nThe run did not finish (%s). `upshift status %s` shows where it stands; fix the cause and `upshift run %s` resumes it. Plugin logs: %s\n", res.Status, dir, dir, logPath)
		}
		return exitError{exitInvalid}
	case err != nil:
		return runError(cmd, err)
	}
	return nil
}

// digest identifies a playbook's sources and variable values, so a journal
// can tell which playbook it belongs to.
func digest(pb *playbooks.Playbook) string {
	h := sha256.New()
	names := make([]string, 0, len(pb.Files))
	for n := range pb.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		// Names as typed differ from one working directory to another:
		// the base name and the contents identify a file.
		io.WriteString(h, filepath.Base(n))
		h.Write(pb.Files[n].Bytes)
	}
	for _, n := range sortedVarNames(pb) {
		v, _ := pb.Variables[n].Value.UnmarkDeep()
		if b, _, err := schema.ValueJSON(v); err == nil {
			io.WriteString(h, n)
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedVarNames(pb *playbooks.Playbook) []string {
	var out []string
	for n, v := range pb.Variables {
		if v.Value != cty.NilVal {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
