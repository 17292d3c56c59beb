package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

// writeEnding says where a run that did not finish left the cluster, as
// the run said when it ended.
func writeEnding(out io.Writer, e *journal.Ending) {
	switch {
	case e == nil:
	case e.Returned != "":
		fmt.Fprintf(out, "\nIt ended before its point of no return: %s.\n", termtext.Block(e.Returned))
	case len(e.Standing) > 0:
		fmt.Fprintf(out, "\nIt is past its point of no return (%s ran). Where each item stands:\n  %s\n", termtext.Line(e.PointOfNoReturn), termtext.Block(strings.Join(e.Standing, "\n  ")))
	}
}

// stateDir is where a playbook's state lives unless --state-dir says
// otherwise: beside the playbook. It holds one folder per cluster the
// playbook was run against (journal.Store).
func stateDir(dir, flag string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dir, ".upshift", "state")
}

func newStatusCommand() *cobra.Command {
	var state, only string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status DIR",
		Short: "Show the runs of each cluster the playbook was run against: current and past",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			store, err := journal.OpenStore(stateDir(dir, state))
			if err != nil {
				return runError(cmd, err)
			}
			clusters, err := selectClusters(store, only)
			if err != nil {
				return runError(cmd, err)
			}
			legacy, err := store.Legacy()
			if err != nil {
				return runError(cmd, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeStatusJSON(out, clusters, legacy)
			}
			if len(clusters) == 0 && legacy == nil {
				fmt.Fprintf(out, "No run has begun for %s.\n", dir)
				return nil
			}
			for i, c := range clusters {
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "Cluster %s: %s\n", termtext.Line(c.Cluster.Label()), termtext.Line(c.Cluster.Describe()))
				if c.Current == nil {
					fmt.Fprintln(out, "no run has begun")
				} else if err := journal.Format(out, shownRun(c.Current)); err != nil {
					return err
				}
				if c.Current != nil && c.Unfinished() {
					writeEnding(out, c.Current.Ending)
				}
				if len(c.History) > 0 {
					fmt.Fprintln(out, "\nPast runs:")
					for k := len(c.History) - 1; k >= 0; k-- {
						r, err := journal.LoadFile(c.History[k])
						if err != nil {
							fmt.Fprintf(out, "  %s: %s\n", termtext.Line(filepath.Base(c.History[k])), termtext.Block(err.Error()))
							continue
						}
						fmt.Fprintf(out, "  run %s: %s, started %s, updated %s\n", termtext.Line(r.ID), termtext.Line(string(r.Status)), localTime(r.StartedAt), localTime(r.UpdatedAt))
					}
				}
				if c.Unfinished() {
					fmt.Fprintf(out, "\nThe run is not finished. `upshift run %s` (with the same variables) resumes it; `upshift abort %s --cluster %s` gives it up.\n", dir, dir, c.Cluster.Short())
				}
			}
			if legacy != nil {
				fmt.Fprintf(out, "\nThis state folder also holds the journal of an older upshift, not filed under a cluster: run %s, %s, started %s. `upshift run` files it under its cluster when the playbook and variables are the same, or asks.\n",
					termtext.Line(legacy.ID), termtext.Line(string(legacy.Status)), localTime(legacy.StartedAt))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state-dir", "", "state folder (default DIR/.upshift/state)")
	cmd.Flags().StringVar(&only, "cluster", "", "show only the cluster whose id starts with this")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the clusters and their runs as JSON")
	return cmd
}

func localTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// selectClusters returns the clusters of store, or those whose id starts
// with prefix.
func selectClusters(store *journal.Store, prefix string) ([]*journal.ClusterState, error) {
	all, err := store.Clusters()
	if err != nil || prefix == "" {
		return all, err
	}
	var out []*journal.ClusterState
	for _, c := range all {
		if strings.HasPrefix(c.Cluster.ID, prefix) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cluster %q in %s", prefix, store.Dir())
	}
	return out, nil
}

// shownRun is run as `status` shows it: the text in it (errors and notes
// from plugins, addresses from the playbook's variables) escaped for the
// terminal, and no result kept for a resume (the store's reader drops
// sealed ones already; this holds for journals of older versions too).
func shownRun(run *journal.Run) *journal.Run {
	if run == nil {
		return nil
	}
	c := *run
	c.ID, c.Playbook, c.Status = termtext.Line(run.ID), termtext.Line(run.Playbook), journal.Status(termtext.Line(string(run.Status)))
	c.Steps = make(map[string]*journal.Step, len(run.Steps))
	for addr, s := range run.Steps {
		st := *s
		st.Address, st.Action = termtext.Line(s.Address), termtext.Line(s.Action)
		st.Status = journal.Status(termtext.Line(string(s.Status)))
		st.Error, st.Note = termtext.Block(s.Error), termtext.Block(s.Note)
		st.ResultWire = nil
		c.Steps[termtext.Line(addr)] = &st
	}
	return &c
}

// jsonRun is run for `status --json`: JSON escapes control characters
// itself, so only what a resume keeps is left out; sensitive arguments and
// results were recorded as "(sensitive)".
func jsonRun(run *journal.Run) *journal.Run {
	if run == nil {
		return nil
	}
	c := *run
	c.Steps = make(map[string]*journal.Step, len(run.Steps))
	for addr, s := range run.Steps {
		st := *s
		st.ResultWire = nil
		c.Steps[addr] = &st
	}
	return &c
}

func writeStatusJSON(w io.Writer, clusters []*journal.ClusterState, legacy *journal.Run) error {
	type past struct {
		ID        string         `json:"id"`
		Status    journal.Status `json:"status"`
		StartedAt time.Time      `json:"started_at"`
		UpdatedAt time.Time      `json:"updated_at"`
	}
	type cluster struct {
		*journal.Cluster
		Current *journal.Run `json:"current"`
		Past    []past       `json:"past"`
	}
	doc := struct {
		Clusters []cluster    `json:"clusters"`
		Legacy   *journal.Run `json:"legacy,omitempty"`
	}{Clusters: []cluster{}, Legacy: jsonRun(legacy)}
	for _, c := range clusters {
		e := cluster{Cluster: c.Cluster, Current: jsonRun(c.Current), Past: []past{}}
		for _, h := range c.History {
			if r, err := journal.LoadFile(h); err == nil {
				e.Past = append(e.Past, past{r.ID, r.Status, r.StartedAt, r.UpdatedAt})
			}
		}
		doc.Clusters = append(doc.Clusters, e)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func newAbortCommand() *cobra.Command {
	var state, only string
	cmd := &cobra.Command{
		Use:   "abort DIR",
		Short: "Give up a cluster's unfinished run, so that its next run starts from the beginning",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := journal.OpenStore(stateDir(args[0], state))
			if err != nil {
				return runError(cmd, err)
			}
			clusters, err := selectClusters(store, only)
			if err != nil {
				return runError(cmd, err)
			}
			var unfinished []*journal.ClusterState
			for _, c := range clusters {
				if c.Unfinished() {
					unfinished = append(unfinished, c)
				}
			}
			if legacy, err := store.Legacy(); err == nil && legacy != nil && legacy.Resumable() && only == "" {
				unfinished = append(unfinished, &journal.ClusterState{Cluster: &journal.Cluster{ID: "legacy"}, Dir: store.Dir(), Current: legacy})
			}
			switch len(unfinished) {
			case 0:
				fmt.Fprintln(cmd.OutOrStdout(), "There is no unfinished run to abort.")
				return nil
			case 1:
			default:
				var names []string
				for _, c := range unfinished {
					names = append(names, fmt.Sprintf("  %s: run %s (%s), %s", c.Cluster.Label(), c.Current.ID, c.Current.Status, c.Cluster.Describe()))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: several clusters have an unfinished run; say which with --cluster:\n%s\n", strings.Join(names, "\n"))
				return exitError{exitUsage}
			}
			c := unfinished[0]
			lock, err := journal.Acquire(c.Dir, journal.CurrentOwner(""))
			if err != nil {
				return lockError(cmd, err)
			}
			defer lock.Release()
			j, err := journal.Open(c.Dir)
			if err != nil {
				return runError(cmd, err)
			}
			defer j.Close()
			run, err := j.Load()
			if err != nil {
				return runError(cmd, err)
			}
			if run == nil || !run.Resumable() {
				fmt.Fprintln(cmd.OutOrStdout(), "There is no unfinished run to abort.")
				return nil
			}
			if err := j.Finish(journal.Aborted); err != nil {
				return runError(cmd, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Run %s of cluster %s aborted. Nothing was undone: `upshift status %s` shows what had been done.\n", run.ID, c.Cluster.Label(), args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state-dir", "", "state folder (default DIR/.upshift/state)")
	cmd.Flags().StringVar(&only, "cluster", "", "the cluster whose run to abort (id or its start), when several have one")
	return cmd
}

// runError prints err and returns exit code 1: the command was used right
// but what it was asked to do failed.
func runError(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", termtext.Block(err.Error()))
	return exitError{exitInvalid}
}

// failed prints err and returns the code of a failed run.
func failed(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", termtext.Block(err.Error()))
	return exitError{exitFailed}
}

// refused prints err and returns the code of a run the state folder
// refused before anything changed.
func refused(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\nNothing was changed.\n", termtext.Block(err.Error()))
	return exitError{exitRefused}
}

// lockError prints err; a lock held by another run has its own code.
func lockError(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", termtext.Block(err.Error()))
	var held *journal.HeldError
	if errors.As(err, &held) {
		return exitError{exitLocked}
	}
	return exitError{exitFailed}
}
