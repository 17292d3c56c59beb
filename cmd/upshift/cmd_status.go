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
	var sf stateFlags
	cmd := &cobra.Command{
		Use:   "status DIR",
		Short: "Show the runs of each cluster the playbook was run against: current and past",
		Long: `status shows, for each cluster of the state folder (or, with --state
postgres, of the PostgreSQL database: every cluster kept there), its current
run step by step and its past runs: who ran each, from where, with which
upshift and playbook digest, how it ended, and its write-outage window.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			backend, err := sf.resolveWith(playbookState(args[0]))
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
				return exitError{exitUsage}
			}
			var clusters []*journal.ClusterState
			var legacy *journal.Run
			if backend.postgres {
				backend.pg.Key = nil // a reader needs no secret
				pg, err := openState(cmd.Context(), backend)
				if err != nil {
					return runError(cmd, err)
				}
				defer pg.Close()
				all, err := pg.Clusters(cmd.Context())
				if err != nil {
					return runError(cmd, err)
				}
				if clusters, err = filterClusters(all, only, "PostgreSQL at "+pg.Where()); err != nil {
					return runError(cmd, err)
				}
			} else {
				store, err := journal.OpenStore(stateDir(dir, state))
				if err != nil {
					return runError(cmd, err)
				}
				if clusters, err = selectClusters(store, only); err != nil {
					return runError(cmd, err)
				}
				if legacy, err = store.Legacy(); err != nil {
					return runError(cmd, err)
				}
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
				if c.Current != nil {
					writeAudit(out, c.Current)
					writeOutage(out, c.Current)
				}
				if c.Current != nil && c.Unfinished() {
					writeEnding(out, c.Current.Ending)
				}
				if len(c.History) > 0 || len(c.Past) > 0 {
					fmt.Fprintln(out, "\nPast runs:")
					for k := len(c.Past) - 1; k >= 0; k-- {
						writePast(out, c.Past[k])
					}
					for k := len(c.History) - 1; k >= 0; k-- {
						r, err := journal.LoadFile(c.History[k])
						if err != nil {
							fmt.Fprintf(out, "  %s: %s\n", termtext.Line(filepath.Base(c.History[k])), termtext.Block(err.Error()))
							continue
						}
						writePast(out, r)
					}
				}
				if c.Unfinished() {
					fl := ""
					if a := sf.args(); len(a) > 0 {
						fl = " " + strings.Join(a, " ")
					}
					fmt.Fprintf(out, "\nThe run is not finished. `upshift run %s%s` (with the same variables) resumes it; `upshift abort %s%s --cluster %s` gives it up.\n", dir, fl, dir, fl, c.Cluster.Short())
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
	sf.register(cmd)
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
	if err != nil {
		return nil, err
	}
	return filterClusters(all, prefix, store.Dir())
}

// filterClusters keeps the clusters whose id starts with prefix (all of
// them when it is "").
func filterClusters(all []*journal.ClusterState, prefix, where string) ([]*journal.ClusterState, error) {
	if prefix == "" {
		return all, nil
	}
	var out []*journal.ClusterState
	for _, c := range all {
		if strings.HasPrefix(c.Cluster.ID, prefix) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cluster %q in %s", prefix, where)
	}
	return out, nil
}

// shortDigest is the part of a run's playbook digest worth showing.
func shortDigest(d string) string {
	if i := strings.LastIndexByte(d, ':'); i >= 0 {
		d = d[i+1:]
	}
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// writeAudit says who began run, from where, with what.
func writeAudit(out io.Writer, run *journal.Run) {
	if a := run.Audit; a != nil {
		fmt.Fprintf(out, "begun by %s@%s with upshift %s, playbook digest %s: %s\n", termtext.Line(a.User), termtext.Line(a.Host), termtext.Line(a.Version), termtext.Line(shortDigest(run.Digest)), termtext.Line(a.Command))
	}
}

// outageText is a run's write-outage window in one line, "" without one:
// its length, times and parts once a node on the new version took writes;
// otherwise what became of it (still refused, or taken again by the old
// version when the run returned the cluster to where it began).
func outageText(run *journal.Run) string {
	o := run.WriteOutage()
	if o == nil {
		return ""
	}
	if o.State() != journal.OutageClosed {
		return termtext.Line(o.Line(localTime))
	}
	d := func(from, to time.Time) string { return to.Sub(from).Round(time.Millisecond).String() }
	s := "writes refused for " + d(o.From, o.To) + " (" + localTime(o.From) + " to " + o.To.Local().Format("15:04:05") + ")"
	var parts []string
	for _, p := range o.Parts {
		parts = append(parts, termtext.Line(p.Name)+" "+d(p.From, p.To))
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

func writeOutage(out io.Writer, run *journal.Run) {
	if s := outageText(run); s != "" {
		fmt.Fprintf(out, "write outage: %s\n", s)
	}
}

// writePast is one past run's line (and its audit and outage, indented).
func writePast(out io.Writer, r *journal.Run) {
	fmt.Fprintf(out, "  run %s: %s, started %s, updated %s\n", termtext.Line(r.ID), termtext.Line(string(r.Status)), localTime(r.StartedAt), localTime(r.UpdatedAt))
	if a := r.Audit; a != nil {
		fmt.Fprintf(out, "    by %s@%s, upshift %s, playbook digest %s\n", termtext.Line(a.User), termtext.Line(a.Host), termtext.Line(a.Version), termtext.Line(shortDigest(r.Digest)))
	}
	if s := outageText(r); s != "" {
		fmt.Fprintf(out, "    %s\n", s)
	}
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
		ID          string          `json:"id"`
		Status      journal.Status  `json:"status"`
		StartedAt   time.Time       `json:"started_at"`
		UpdatedAt   time.Time       `json:"updated_at"`
		Digest      string          `json:"digest,omitempty"`
		Audit       *journal.Audit  `json:"audit,omitempty"`
		Ending      *journal.Ending `json:"ending,omitempty"`
		WriteOutage *journal.Outage `json:"write_outage,omitempty"`
	}
	pastOf := func(r *journal.Run) past {
		return past{r.ID, r.Status, r.StartedAt, r.UpdatedAt, r.Digest, r.Audit, r.Ending, r.WriteOutage()}
	}
	type cluster struct {
		*journal.Cluster
		Current     *journal.Run    `json:"current"`
		WriteOutage *journal.Outage `json:"write_outage,omitempty"` // the current run's
		Past        []past          `json:"past"`
	}
	doc := struct {
		Clusters []cluster    `json:"clusters"`
		Legacy   *journal.Run `json:"legacy,omitempty"`
	}{Clusters: []cluster{}, Legacy: jsonRun(legacy)}
	for _, c := range clusters {
		e := cluster{Cluster: c.Cluster, Current: jsonRun(c.Current), WriteOutage: c.Current.WriteOutage(), Past: []past{}}
		for _, r := range c.Past {
			e.Past = append(e.Past, pastOf(r))
		}
		for _, h := range c.History {
			if r, err := journal.LoadFile(h); err == nil {
				e.Past = append(e.Past, pastOf(r))
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
	var sf stateFlags
	cmd := &cobra.Command{
		Use:   "abort DIR",
		Short: "Give up a cluster's unfinished run, so that its next run starts from the beginning",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			backend, err := sf.resolveWith(playbookState(args[0]))
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
				return exitError{exitUsage}
			}
			if backend.postgres {
				return abortPG(cmd, backend, only, args[0])
			}
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
	sf.register(cmd)
	cmd.Flags().StringVar(&only, "cluster", "", "the cluster whose run to abort (id or its start), when several have one")
	return cmd
}

// abortPG is abort for state kept in PostgreSQL: --cluster is needed when
// the database holds more than one unfinished run.
func abortPG(cmd *cobra.Command, backend *stateConfig, only, dir string) error {
	ctx := cmd.Context()
	backend.pg.Key = nil // giving up a run opens no result
	pg, err := openState(ctx, backend)
	if err != nil {
		return runError(cmd, err)
	}
	defer pg.Close()
	all, err := pg.Clusters(ctx)
	if err != nil {
		return runError(cmd, err)
	}
	clusters, err := filterClusters(all, only, "PostgreSQL at "+pg.Where())
	if err != nil {
		return runError(cmd, err)
	}
	var unfinished []*journal.ClusterState
	for _, c := range clusters {
		if c.Unfinished() {
			unfinished = append(unfinished, c)
		}
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
	lock, err := pg.Acquire(ctx, c.Cluster, journal.CurrentOwner(""))
	if err != nil {
		return lockError(cmd, err)
	}
	defer lock.Release()
	run, err := pg.Current(ctx, c.Cluster)
	if err != nil {
		return runError(cmd, err)
	}
	if run == nil || !run.Resumable() {
		fmt.Fprintln(cmd.OutOrStdout(), "There is no unfinished run to abort.")
		return nil
	}
	j := pg.Journal(c.Cluster)
	j.WithLock(lock, nil)
	if err := j.Finish(journal.Aborted); err != nil {
		return runError(cmd, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Run %s of cluster %s aborted. Nothing was undone: `upshift status %s --state postgres` shows what had been done.\n", run.ID, c.Cluster.Label(), dir)
	return nil
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
