package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/internal/report"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

func newReportCommand() *cobra.Command {
	var state, only, runID, outPath, trafficPath string
	var sf stateFlags
	cmd := &cobra.Command{
		Use:   "report DIR",
		Short: "Write the HTML timeline of a run from its journal: steps per node, gates, waits, traffic, who ran it",
		Long: `report writes one self-contained HTML file (no script, no network) of a run
of the playbook in DIR, read from its journal: who ran it, where, with which
upshift and playbook digest; per node each step with its duration and
outcome, gates and waits, the write-outage window; and under it, on the same
time axis, the load balancer's requests and errors per second as the
rollout's traffic guard sampled them, and the lab's traffic when the
playbook is a lab's copy (LAB/playbook, with LAB/traffic.json beside it) or
--traffic names a file.

Without --run, the current run of the cluster (the last one begun); --run
ID picks any run of the journal, past ones included.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			runs, err := reportRuns(cmd, dir, state, only, &sf)
			if err != nil {
				return err
			}
			run, err := pickRun(runs, runID)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", termtext.Block(err.Error()))
				return exitError{exitFailed}
			}
			var samples []traffic.Sample
			if trafficPath == "" {
				// A lab's playbook copy sits beside the lab's traffic.
				if p := filepath.Join(filepath.Dir(filepath.Clean(dir)), "traffic.json"); fileExists(p) {
					trafficPath = p
				}
			}
			if trafficPath != "" {
				b, err := os.ReadFile(trafficPath)
				if err == nil {
					err = json.Unmarshal(b, &samples)
				}
				if err != nil {
					return runError(cmd, fmt.Errorf("reading the traffic of %s: %w", trafficPath, err))
				}
			}
			if outPath == "" {
				outPath = "upshift-report-" + safeFileName(run.ID) + ".html"
			}
			f, err := os.Create(outPath)
			if err != nil {
				return runError(cmd, err)
			}
			m, werr := report.WriteRun(f, report.RunData{Run: run, Traffic: samples})
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return runError(cmd, werr)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wrote the report of run %s (%s, %d rows) to %s.\n", termtext.Line(run.ID), termtext.Line(string(run.Status)), m.Rows, outPath)
			if trafficPath != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "With the traffic of %s.\n", trafficPath)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state-dir", "", "state folder (default DIR/.upshift/state)")
	sf.register(cmd)
	cmd.Flags().StringVar(&only, "cluster", "", "the cluster whose id starts with this (when the state holds several)")
	cmd.Flags().StringVar(&runID, "run", "", "the run to report (default: the current run)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "the HTML file to write (default upshift-report-RUN.html)")
	cmd.Flags().StringVar(&trafficPath, "traffic", "", "a lab's traffic.json to draw under the timeline")
	return cmd
}

// reportRuns lists the runs of the cluster the report is about: its
// current run first, then its past ones, newest first.
func reportRuns(cmd *cobra.Command, dir, state, only string, sf *stateFlags) ([]*journal.Run, error) {
	backend, err := sf.resolve()
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
		return nil, exitError{exitUsage}
	}
	var clusters []*journal.ClusterState
	where := stateDir(dir, state)
	if backend.postgres {
		backend.pg.Key = nil // a reader needs no secret
		pg, err := openState(cmd.Context(), backend)
		if err != nil {
			return nil, runError(cmd, err)
		}
		defer pg.Close()
		all, err := pg.Clusters(cmd.Context())
		if err != nil {
			return nil, runError(cmd, err)
		}
		where = "PostgreSQL at " + pg.Where()
		if clusters, err = filterClusters(all, only, where); err != nil {
			return nil, runError(cmd, err)
		}
	} else {
		store, err := journal.OpenStore(where)
		if err != nil {
			return nil, runError(cmd, err)
		}
		if clusters, err = selectClusters(store, only); err != nil {
			return nil, runError(cmd, err)
		}
	}
	switch {
	case len(clusters) == 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: no run has begun for %s (state: %s).\n", dir, where)
		return nil, exitError{exitFailed}
	case len(clusters) > 1:
		var ids []string
		for _, c := range clusters {
			ids = append(ids, c.Cluster.Short())
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s holds runs of %d clusters (%s): --cluster ID says which.\n", where, len(clusters), strings.Join(ids, ", "))
		return nil, exitError{exitUsage}
	}
	c := clusters[0]
	var runs []*journal.Run
	if c.Current != nil {
		runs = append(runs, c.Current)
	}
	for k := len(c.Past) - 1; k >= 0; k-- {
		runs = append(runs, c.Past[k])
	}
	for k := len(c.History) - 1; k >= 0; k-- {
		r, err := journal.LoadFile(c.History[k])
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s: %s\n", c.History[k], termtext.Block(err.Error()))
			continue
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// pickRun is the run with this id (or whose id starts with it), or the
// first (the current) without one.
func pickRun(runs []*journal.Run, id string) (*journal.Run, error) {
	if len(runs) == 0 {
		return nil, errors.New("no run has begun")
	}
	if id == "" {
		return runs[0], nil
	}
	var found []*journal.Run
	for _, r := range runs {
		if r.ID == id {
			return r, nil
		}
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("run %q names %d runs; the runs are: %s", id, len(found), strings.Join(ids, ", "))
	}
	return nil, fmt.Errorf("no run %q; the runs are: %s", id, strings.Join(ids, ", "))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// safeFileName keeps letters, digits, '-', '_' and '.' of s.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
