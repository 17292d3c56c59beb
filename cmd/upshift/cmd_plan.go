package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

// checkCommand is validate, plan and graph: each loads the playbook the same
// way (load, with the pinned plugins when there are any) and differs only in
// what it prints.
func checkCommand(use, short string, write func(w io.Writer, dir string, l *loaded) error) *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := load(cmd, args[0], vf, withContracts, nil)
			if err != nil {
				return err
			}
			defer l.Close()
			return write(cmd.OutOrStdout(), args[0], l)
		},
	}
	vf.register(cmd)
	return cmd
}

func newValidateCommand() *cobra.Command {
	return checkCommand("validate DIR", "Check a playbook: syntax, types, references, action arguments and cycles",
		func(w io.Writer, dir string, l *loaded) error {
			_, err := fmt.Fprintf(w, "The playbook %s is valid: %d steps.\n", dir, len(l.graph.Instances))
			return err
		})
}

func newPlanCommand() *cobra.Command {
	var asJSON bool
	var outFile, state string
	var sf stateFlags
	cmd := checkCommand("plan DIR", "Show the steps a run would execute, in order, with their arguments", nil)
	cmd.Long = `plan shows the steps a run would execute, in order, with their arguments.
When the cluster's state (the state folder, or PostgreSQL with --state
postgres) holds finished runs of it, plan ends with the write outage they
had: the median of the last 5 that closed one, with its parts.`
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	cmd.Flags().StringVar(&outFile, "out", "", "save the plan to FILE, with what preflight sees of the cluster; upshift run FILE applies exactly it")
	cmd.Flags().StringVar(&state, "state-dir", "", "state folder whose past runs give the write-outage estimate (default DIR/.upshift/state)")
	sf.register(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var vf varFlags
		vf.vars, _ = cmd.Flags().GetStringArray("var")
		vf.varFiles, _ = cmd.Flags().GetStringArray("var-file")
		estimate := func(l *loaded) *journal.OutageEstimate {
			return outageEstimate(cmd.ErrOrStderr(), args[0], l, state, sf)
		}
		if outFile != "" {
			return savePlan(cmd, args[0], vf, outFile, asJSON, estimate)
		}
		l, err := load(cmd, args[0], vf, withContracts, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		return writePlan(cmd.OutOrStdout(), l, asJSON, estimate(l))
	}
	return cmd
}

// estimateTimeout bounds reading a PostgreSQL state for the estimate: plan
// must stay quick, and works without any state.
const estimateTimeout = 3 * time.Second

// outageEstimate is what the cluster's past runs say of a run's write
// outage (journal.EstimateOutage), from the state the run would use: the
// state folder or PostgreSQL (flags, environment, then the playbook's
// state block, as run chooses). Only this cluster's runs count. nil when
// there are none; when the state cannot be read, a note says so and plan
// goes on.
func outageEstimate(notes io.Writer, dir string, l *loaded, state string, sf stateFlags) *journal.OutageEstimate {
	backend, err := sf.resolveWith(l.pb.State)
	if err != nil {
		fmt.Fprintf(notes, "Note: no write-outage estimate: %s\n", termtext.Line(err.Error()))
		return nil
	}
	cluster := runner.Identify(l.pb)
	var runs []*journal.Run
	if backend.postgres {
		ctx, cancel := context.WithTimeout(context.Background(), estimateTimeout)
		defer cancel()
		backend.pg.Key = nil // a reader needs no secret
		backend.pg.Retry = estimateTimeout
		var pg *journal.PGStore
		if pg, err = openState(ctx, backend); err == nil {
			runs, err = pg.RecentRuns(ctx, cluster)
			pg.Close()
		}
	} else {
		runs, err = journal.RecentRuns(stateDir(dir, state), cluster)
	}
	if err != nil {
		fmt.Fprintf(notes, "Note: no write-outage estimate: the state's past runs could not be read: %s\n", termtext.Line(err.Error()))
		return nil
	}
	return journal.EstimateOutage(runs)
}

// writePlan prints the plan, then the write-outage estimate when there is
// one: a last line of text, or write_outage_estimate in the JSON.
func writePlan(w io.Writer, l *loaded, asJSON bool, est *journal.OutageEstimate) error {
	if !asJSON {
		if err := l.plan.WriteText(w); err != nil {
			return err
		}
		if est != nil {
			_, err := fmt.Fprintf(w, "\nWrite outage: %s.\n", est.Text())
			return err
		}
		return nil
	}
	if est == nil {
		return l.plan.WriteJSON(w)
	}
	var buf bytes.Buffer
	if err := l.plan.WriteJSON(&buf); err != nil {
		return err
	}
	doc, err := withField(buf.Bytes(), "write_outage_estimate", est)
	if err != nil {
		return err
	}
	_, err = w.Write(doc)
	return err
}

// withField adds name: v as the last member of doc, an indented JSON
// object, keeping its members in their order (the plan's format_version
// stays first).
func withField(doc []byte, name string, v any) ([]byte, error) {
	doc = bytes.TrimRight(doc, "\n")
	if !json.Valid(doc) || len(doc) < 2 || doc[len(doc)-1] != '}' {
		return nil, errors.New("plan: the JSON document is not an object")
	}
	val, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return nil, err
	}
	key, _ := json.Marshal(name)
	body := bytes.TrimRight(doc[:len(doc)-1], " \n")
	var out bytes.Buffer
	out.Write(body)
	if !bytes.HasSuffix(body, []byte("{")) {
		out.WriteByte(',')
	}
	fmt.Fprintf(&out, "\n  %s: %s\n}\n", key, val)
	return out.Bytes(), nil
}

func newGraphCommand() *cobra.Command {
	return checkCommand("graph DIR", "Print the step graph in Graphviz DOT (pipe it to dot -Tsvg)",
		func(w io.Writer, _ string, l *loaded) error { return l.graph.WriteDOT(w) })
}

// savePlan is plan -out: the plan, with what preflight sees of the cluster
// now (the plugins are started and configured for it; nothing is
// changed), written to file for `upshift run FILE`.
func savePlan(cmd *cobra.Command, dir string, vf varFlags, file string, asJSON bool, estimate func(*loaded) *journal.OutageEstimate) error {
	l, err := load(cmd, dir, vf, withPlugins, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.configure(cmd.Context()); err != nil {
		return failed(cmd, err)
	}
	sp, err := observePlan(cmd, l, "")
	var pe *runner.PreflightError
	if errors.As(err, &pe) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\nNo plan was saved: a run of it would refuse to begin.\n", termtext.Block(pe.Error()))
		return exitError{exitPreflight}
	}
	if err != nil {
		return runError(cmd, err)
	}
	if sp.Playbook, err = filepath.Abs(dir); err != nil {
		return runError(cmd, err)
	}
	for _, f := range vf.varFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return runError(cmd, err)
		}
		sp.VarFiles = append(sp.VarFiles, abs)
	}
	var secret []string
	for _, v := range vf.vars {
		name, _, _ := strings.Cut(v, "=")
		if pv := l.pb.Variables[strings.TrimSpace(name)]; pv != nil && pv.Sensitive {
			secret = append(secret, strings.TrimSpace(name))
			continue
		}
		sp.Vars = append(sp.Vars, v)
	}
	o := journal.CurrentOwner("")
	sp.CreatedAt, sp.CreatedBy, sp.Digest = time.Now().UTC(), o.User+"@"+o.Host, digest(l.pb)
	w := cmd.OutOrStdout()
	if err := writePlan(w, l, asJSON, estimate(l)); err != nil {
		return runError(cmd, err)
	}
	if err := sp.Write(file); err != nil {
		return runError(cmd, err)
	}
	msg := fmt.Sprintf("\nSaved this plan to %s, with what preflight saw of the load balancer and the nodes. `upshift run %s` applies exactly it, without asking, and refuses if the playbook, its variables, the plugins or what preflight sees of the cluster changed meanwhile.\n", file, shellQuote(file))
	if len(secret) > 0 {
		msg += fmt.Sprintf("Sensitive variables are not saved (%s): give them to upshift run again (-var or UPSHIFT_VAR_<name>).\n", strings.Join(secret, ", "))
	}
	fmt.Fprint(cmd.ErrOrStderr(), msg)
	return nil
}

// observePlan runs the preflight checks (the plugins configured) and
// makes the saved form of l's plan with what they saw; salt is a saved
// plan's, to compare with it, or "".
func observePlan(cmd *cobra.Command, l *loaded, salt string) (*runner.SavedPlan, error) {
	l.pb.SetRunID(runner.NewRunID(time.Now()))
	rep := runner.Preflight(cmd.Context(), l.graph, l.plugins.Providers(), nil, defaultParallelism)
	if !rep.OK() {
		return nil, &runner.PreflightError{Report: rep}
	}
	return runner.SavePlan(l.plan, l.pluginInfos(), rep, runner.Identify(l.pb).ID, salt)
}

// useSavedPlan makes run apply the saved plan in file: its playbook, its
// variable files and variables (and those given now: sensitive ones are
// not saved), approved, beginning a new run.
func useSavedPlan(rf *runFlags, file string) error {
	sp, err := runner.ReadSavedPlan(file)
	if err != nil {
		return err
	}
	rf.saved, rf.planFile = sp, file
	rf.vars.varFiles = append(append([]string{}, sp.VarFiles...), rf.vars.varFiles...)
	rf.vars.vars = append(append([]string{}, sp.Vars...), rf.vars.vars...)
	rf.autoApprove, rf.newRun = true, true
	return nil
}

// checkSavedPlan refuses a saved plan that no longer holds: the run would
// begin on an unfinished one, or the playbook, its variables, the plugins,
// the steps or what preflight sees differ from when it was saved. Each
// difference is named; nothing is changed.
func checkSavedPlan(cmd *cobra.Command, dir string, rf runFlags, l *loaded, prev *journal.Run, beginning bool) error {
	stderr := cmd.ErrOrStderr()
	again := fmt.Sprintf("upshift plan %s -out %s", shellQuote(dir), shellQuote(rf.planFile))
	if !beginning {
		fmt.Fprintf(stderr, "Error: the saved plan %s begins a new run, but run %s of this cluster is %s, not finished. `upshift run %s` resumes it (or `upshift abort` gives it up); nothing was changed.\n", rf.planFile, prev.ID, prev.Status, shellQuote(dir))
		return exitError{exitRefused}
	}
	var diffs []string
	now, err := observePlan(cmd, l, rf.saved.Salt)
	var pe *runner.PreflightError
	switch {
	case errors.As(err, &pe):
		for _, f := range pe.Report.Failures {
			diffs = append(diffs, fmt.Sprintf("preflight %s now finds a problem: %s", f.Address, strings.ReplaceAll(f.Error, "\n", "\n      ")))
		}
		// The rest still compares: the files or variables may say why.
		now, err = runner.SavePlan(l.plan, l.pluginInfos(), &runner.PreflightReport{}, runner.Identify(l.pb).ID, rf.saved.Salt)
		if err != nil {
			return runError(cmd, err)
		}
		now.Observed = rf.saved.Observed
	case err != nil:
		return runError(cmd, err)
	}
	diffs = append(diffs, rf.saved.Differences(now)...)
	if len(diffs) == 0 {
		fmt.Fprintf(stderr, "The saved plan %s (made %s by %s) still holds: applying it.\n", rf.planFile, rf.saved.CreatedAt.Format("2006-01-02 15:04:05 UTC"), rf.saved.CreatedBy)
		return nil
	}
	fmt.Fprintf(stderr, "Error: the saved plan %s no longer holds; nothing was changed. Since it was made (%s by %s):\n  - %s\nLook at what changed, then make a new plan: %s\n",
		rf.planFile, rf.saved.CreatedAt.Format("2006-01-02 15:04:05 UTC"), rf.saved.CreatedBy, termtext.Block(strings.Join(diffs, "\n  - ")), again)
	return exitError{exitRefused}
}
