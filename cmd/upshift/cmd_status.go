package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/runner/journal"
)

// stateDir is where a playbook's journal and lock live unless --state-dir
// says otherwise: beside the playbook, so one playbook folder is one
// environment.
func stateDir(dir, flag string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dir, ".upshift", "state")
}

func newStatusCommand() *cobra.Command {
	var state string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status DIR",
		Short: "Show where the current or last run of a playbook stands",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := journal.Open(stateDir(args[0], state))
			if err != nil {
				return err
			}
			run, err := j.Load()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if run == nil {
				fmt.Fprintf(out, "No run has begun for %s.\n", args[0])
				return nil
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(run)
			}
			if err := journal.Format(out, run); err != nil {
				return err
			}
			switch run.Status {
			case journal.Failed, journal.Paused, journal.Running:
				fmt.Fprintf(out, "\nThe run is not finished. `upshift run %s` resumes it; `upshift abort %s` gives it up.\n", args[0], args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state-dir", "", "journal folder (default DIR/.upshift/state)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the journal as JSON")
	return cmd
}

func newAbortCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "abort DIR",
		Short: "Give up an unfinished run, so that the next run starts from the beginning",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := stateDir(args[0], state)
			lock, err := journal.Acquire(dir, journal.CurrentOwner(""))
			if err != nil {
				return runError(cmd, err)
			}
			defer lock.Release()
			j, err := journal.Open(dir)
			if err != nil {
				return err
			}
			run, err := j.Load()
			if err != nil {
				return err
			}
			if run == nil || run.Status == journal.Done || run.Status == journal.Aborted {
				fmt.Fprintln(cmd.OutOrStdout(), "There is no unfinished run to abort.")
				return nil
			}
			if err := j.Finish(journal.Aborted); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Run %s aborted. Nothing was undone: `upshift status %s` shows what had been done.\n", run.ID, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state-dir", "", "journal folder (default DIR/.upshift/state)")
	return cmd
}

// runError prints err and returns exit code 1: the command was used right
// but what it was asked to do failed.
func runError(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
	return exitError{exitInvalid}
}
