package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
	"github.com/upshift-dev/upshift/schema"
)

func newInitCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Find the plugins a playbook uses and pin their checksums in DIR/upshift.lock.hcl",
		Long: `init finds each plugin the playbook names in the trusted plugin folders only
(each folder of $UPSHIFT_PLUGIN_PATH, the folder of the upshift binary,
$XDG_DATA_HOME/upshift/plugins, ~/.upshift/plugins; never the playbook
folder, ./bin or PATH), starts it once to check it is a valid upshift plugin,
and writes its name, version and SHA-256 (no path) to DIR/upshift.lock.hcl.
upshift run starts only binaries whose checksum matches that file.`,
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
	newRun      bool
	noPreflight bool
	again       bool // gone: says to use --new-run
	legacy      string
	backend     stateFlags // --state, --state-dsn, ...: where the journal and lock live
	autoApprove bool       // no confirmation: CI
	target      string     // one rollout item, then hold
	approve     bool       // upshift approve: the run must wait at a gate
	planFile    string     // run FILE / --plan FILE: a saved plan
	saved       *runner.SavedPlan
}

func newRunCommand() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:     "run DIR | run FILE",
		Aliases: []string{"resume"},
		Short:   "Run a playbook, or resume its cluster's unfinished run (alias: resume)",
		Long: `run executes the playbook's steps through its plugins, recording each step in
the journal of the cluster the playbook points at (its resources' identity),
under DIR/.upshift/state (or --state-dir), before and after it runs.

If that cluster's last run did not finish, run resumes it: steps already
done are not run again. If it finished, run says so and changes nothing,
whatever changed in the playbook or its variables; --new-run begins a new
upgrade of the cluster, after printing its plan. Only one run at a time may
use a cluster's journal.

On a terminal, run first shows what it will do (batches, gates, the point
of no return) and goes on only on "yes"; without one it refuses unless
given --auto-approve. run FILE applies a plan saved by upshift plan -out
FILE, without asking, and refuses, naming each difference, if the playbook,
its variables, the plugins or what preflight sees changed since. A rollout
gate ends the run paused; run again (or upshift approve) passes it.
--target ITEM runs that rollout item alone, then pauses.

Ctrl-C, SIGTERM, SIGHUP (terminal closed) and SIGPIPE (output pipe gone)
start no new step and let running steps finish; a second Ctrl-C or SIGTERM
cancels them.

Exit codes: 0 done (or nothing to do), 1 invalid playbook, 2 usage,
3 preflight failed (or, every step done, a verify check found a problem),
4 run failed, 5 paused or stopped, 6 lock held,
7 refused by the state folder (nothing changed).`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := rf.planFile
			if len(args) == 1 {
				dir = args[0]
			}
			if st, err := os.Stat(dir); rf.planFile == "" && err == nil && st.Mode().IsRegular() {
				rf.planFile = dir
			}
			switch {
			case dir == "":
				fmt.Fprintln(cmd.ErrOrStderr(), "Error: run takes a playbook folder, or a saved plan (upshift plan DIR -out FILE).")
				return exitError{exitUsage}
			case rf.planFile != "":
				if err := useSavedPlan(&rf, rf.planFile); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
					return exitError{exitUsage}
				}
				dir = rf.saved.Playbook
			}
			if rf.again {
				fmt.Fprintln(cmd.ErrOrStderr(), "Error: --again is gone: a finished run stays finished, and --new-run begins a new upgrade of the cluster (after printing its plan).")
				return exitError{exitUsage}
			}
			switch rf.legacy {
			case "", legacyAdopt, legacySetAside:
			default:
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: --legacy-state is %q or %q, not %q.\n", legacyAdopt, legacySetAside, rf.legacy)
				return exitError{exitUsage}
			}
			return runPlaybook(cmd, dir, rf)
		},
	}
	rf.vars.register(cmd)
	cmd.Flags().StringVar(&rf.planFile, "plan", "", "apply the plan saved by upshift plan -out FILE (the same as run FILE)")
	rf.backend.register(cmd)
	cmd.Flags().StringVar(&rf.state, "state-dir", "", "state folder: one journal, lock and history per cluster (default DIR/.upshift/state)")
	cmd.Flags().IntVar(&rf.parallelism, "parallelism", defaultParallelism, "most steps running at once")
	cmd.Flags().BoolVar(&rf.asJSON, "json", false, "print one JSON event per line instead of the console view")
	cmd.Flags().StringArrayVar(&rf.rerun, "rerun", nil, "allow a step found in flight after a crash to run again (repeatable)")
	cmd.Flags().BoolVar(&rf.newRun, "new-run", false, "begin a new upgrade of the cluster although its last run finished (prints the plan first)")
	cmd.Flags().BoolVar(&rf.noPreflight, "skip-preflight", false, "begin a new run without the playbook's preflight checks (they find what would stop the run halfway; use only when a check is wrong)")
	cmd.Flags().BoolVar(&rf.again, "again", false, "replaced by --new-run")
	_ = cmd.Flags().MarkHidden("again")
	cmd.Flags().StringVar(&rf.legacy, "legacy-state", "", "a journal left by an older upshift at the top of the state folder: \"adopt\" files it under this cluster, \"set-aside\" moves it to legacy-<time>/")
	rf.registerApproval(cmd)
	return cmd
}

const (
	defaultParallelism = 10
	legacyAdopt        = "adopt"
	legacySetAside     = "set-aside"
)

func runPlaybook(cmd *cobra.Command, dir string, rf runFlags) error {
	stderr := cmd.ErrOrStderr()
	out := cmd.OutOrStdout()
	state := stateDir(dir, rf.state)
	if _, err := rf.backend.resolve(); err != nil {
		fmt.Fprintf(stderr, "Error: %s\n", err)
		return exitError{exitUsage}
	}
	// The state folder keeps the plugins' log whatever the backend.
	store, err := journal.OpenStore(state)
	if err != nil {
		return runError(cmd, err)
	}

	// Plugins' logs, of every cluster of this state folder (appended).
	logPath := filepath.Join(state, journal.LogName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return runError(cmd, err)
	}
	defer logFile.Close()
	logger := hclog.New(&hclog.LoggerOptions{Name: "upshift", Output: logFile, Level: hclog.Debug})

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	stopper := newStopper(stderr, cancel)
	defer stopper.Close()

	// The plugins start with SIGHUP ignored, which they inherit: a closed
	// terminal hangs up its whole process group, and a plugin killed by
	// it would fail the step it runs. upshift itself hears SIGHUP again
	// once they are started (unless it was started under nohup).
	l, err := stopper.withHangupIgnored(func() (*loaded, error) {
		return load(cmd, dir, rf.vars, withPlugins, logger)
	})
	if err != nil {
		return err
	}
	defer l.Close()

	// Flags and environment first, then the playbook's state block.
	backend, err := rf.backend.resolveWith(l.pb.State)
	if err != nil {
		return runError(cmd, err)
	}
	var pg *journal.PGStore
	if backend.postgres {
		if pg, err = openState(ctx, backend); err != nil {
			return runError(cmd, err)
		}
		defer pg.Close()
		store = nil // the state folder's journals are not this run's
	}
	cluster := runner.Identify(l.pb)
	// A backend that goes away for longer than its retry bound stops the
	// run as a signal would: no new step starts.
	backendGone := make(chan error, 1)
	var clusterDir string
	var j *journal.Journal
	if pg != nil {
		// One database holds many clusters and playbooks: another
		// cluster's unfinished run there is none of this one's business.
		if err := pg.Register(ctx, cluster); err != nil {
			return runError(cmd, err)
		}
		lock, err := pg.Acquire(ctx, cluster, journal.CurrentOwner(""))
		if err != nil {
			return lockError(cmd, err)
		}
		defer lock.Release()
		defer l.Close()
		if prev, stale := lock.TakenOver(); stale {
			fmt.Fprintf(stderr, "Warning: took over the lock of a run that ended without releasing it: %s.\n", prev)
		}
		j = pg.Journal(cluster)
		j.WithLock(lock, func(err error) { backendGone <- err })
		clusterDir = j.Path()
	} else {
		if err := adoptLegacy(cmd, store, cluster, l, rf); err != nil {
			return err
		}
		// Another cluster's unfinished run is checked before anything is
		// written, so that a refusal leaves the state folder as it was.
		peek, err := store.Current(cluster)
		if err != nil {
			return failed(cmd, err)
		}
		if peek == nil || !peek.Resumable() && !(peek.Status == journal.Done && !rf.newRun) {
			if err := otherClusters(cmd, store, cluster, true, rf.newRun); err != nil {
				return err
			}
		}
		if clusterDir, err = store.Register(cluster); err != nil {
			return refused(cmd, err)
		}
		// The lock comes before anything is read to decide, and before any
		// plugin is configured: nothing touches the cluster while another run
		// of it holds the lock.
		lock, err := journal.Acquire(clusterDir, journal.CurrentOwner(""))
		if err != nil {
			return lockError(cmd, err)
		}
		defer lock.Release()
		// The plugins end before the lock is released (defers run last
		// first), so that the next run never meets this one's plugins.
		defer l.Close()
		if prev, stale := lock.TakenOver(); stale {
			fmt.Fprintf(stderr, "Warning: took over a stale lock left by %s.\n", prev)
		}
		if j, err = journal.Open(clusterDir); err != nil {
			return runError(cmd, err)
		}
	}
	defer j.Close()
	j.SetAudit(journal.CurrentAudit(version))
	prev, err := j.Load()
	if err != nil {
		return failed(cmd, err)
	}
	who := fmt.Sprintf("cluster %s (%s)", cluster.Label(), cluster.Describe())
	if prev != nil && prev.Cluster != "" && prev.Cluster != cluster.ID {
		return refused(cmd, &runner.ClusterMismatchError{Run: prev, Journal: prev.Cluster, ThisOne: cluster.ID, Directory: clusterDir})
	}
	if prev != nil && prev.Status == journal.Done && !rf.newRun {
		if err := otherClusters(cmd, store, cluster, false, false); err != nil {
			return err
		}
		msg := fmt.Sprintf("Nothing to do: run %s of %s finished at %s, and a finished run stays finished whatever changed in the playbook or its variables. `%s` shows it; `upshift run %s --new-run` begins a new upgrade of this cluster.",
			prev.ID, who, prev.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"), statusArgs(dir, rf), shellQuote(dir))
		if rf.asJSON {
			runner.NewJSONSink(out).Emit(runner.Event{Time: time.Now(), RunID: prev.ID, Type: runner.RunFinished, Status: string(journal.Done), Message: msg, WriteOutage: prev.WriteOutage()})
		} else {
			fmt.Fprintln(out, msg)
		}
		return nil
	}
	beginning := prev == nil || !prev.Resumable()
	if !beginning {
		// Resuming: other clusters' unfinished runs are only mentioned.
		if err := otherClusters(cmd, store, cluster, false, rf.newRun); err != nil {
			return err
		}
	}
	if rf.newRun && beginning && rf.saved == nil { // a saved plan was shown when made
		w := out
		if rf.asJSON {
			w = stderr
		}
		if prev != nil {
			fmt.Fprintf(w, "Beginning a new run of %s; its last run %s %s at %s. The plan:\n\n", who, prev.ID, prev.Status, prev.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		} else {
			fmt.Fprintf(w, "Beginning the first run of %s. The plan:\n\n", who)
		}
		if err := l.plan.WriteText(w); err != nil {
			return runError(cmd, err)
		}
		fmt.Fprintln(w)
	}
	if err := confirm(cmd, dir, rf, l, who, prev, beginning); err != nil {
		return err
	}
	if stopper.Stopped() {
		fmt.Fprintf(stderr, "Stopped (%s) before the run began: nothing was changed.\n", stopper.Reason())
		return exitError{exitStopped}
	}
	if err := l.configure(ctx); err != nil {
		return failed(cmd, err)
	}
	if rf.saved != nil {
		if err := checkSavedPlan(cmd, dir, rf, l, prev, beginning); err != nil {
			return err
		}
	}
	// The state folder's lock keeps two runs from this folder apart; the
	// cluster's own lock, in its database, keeps apart two runs from
	// anywhere (another checkout, state folder or machine).
	unlock, err := lockCluster(ctx, l, lockHolder(journal.CurrentOwner("")))
	if err != nil {
		return clusterLockError(cmd, err)
	}
	defer unlock()

	var goneErr atomic.Pointer[error] // set when the state backend stays unreachable
	sink := newRunSink(out, rf.asJSON, l.graph, runIDOf(l.pb, prev))
	outage := &outageSink{next: sink, load: j.Load}
	fmt.Fprintf(stderr, "Cluster %s: %s (journal %s).\n", cluster.Label(), cluster.Describe(), clusterDir)
	res, err := runner.Run(ctx, l.graph, runner.Options{
		Providers:   l.plugins.Providers(),
		Plugins:     l.pluginInfos(),
		Journal:     j,
		Events:      outage,
		Parallelism: rf.parallelism,
		Stop:        stopOrGone(stopper.Stop(), backendGone, &goneErr),
		Digest:      digest(l.pb),
		Rerun:       rf.rerun,
		Cluster:     cluster,
		NewRun:      rf.newRun,
		Preflight:   !rf.noPreflight,
		Target:      rf.target,
		Approver:    approver(rf),
	})
	sink.Close() // the live view ends before anything else is printed
	if o := outage.window(); o != nil && !rf.asJSON {
		fmt.Fprintf(out, "Write outage: %s.\n", termtext.Line(o.Line(clockTime)))
	}
	var mismatch *runner.ClusterMismatchError
	var preflight *runner.PreflightError
	var unreachable *journal.UnreachableError
	if goneErr.Load() != nil || errors.As(err, &unreachable) {
		gone := error(unreachable)
		if e := goneErr.Load(); e != nil {
			gone = *e
		}
		fmt.Fprintf(stderr, "\nError: %s\n", termtext.Block(backendUnreachable(gone, resumeCommand(dir, rf, l.pb))))
		return exitError{exitFailed}
	}
	switch {
	case errors.As(err, &preflight):
		fmt.Fprintf(stderr, "\nError: %s\nFix them and run again (`%s` runs the checks alone); no run was begun.\n", termtext.Block(preflight.Error()), commandWith("check", dir, rf.vars, l.pb))
		return exitError{exitPreflight}
	case errors.Is(err, runner.ErrRunFailed):
		code := exitFailed
		why := string(res.Status)
		if res.Status == journal.Paused || res.Status == journal.Stopped {
			code = exitStopped
		}
		if stopper.Stopped() {
			why += " by " + stopper.Reason()
		}
		switch {
		case res.Returned != nil:
			fmt.Fprintf(stderr, "\nThe run ended before its point of no return: %s.\n", termtext.Block(res.Returned.Summary()))
			if res.Returned.OK() {
				fmt.Fprintln(stderr, "Every node runs the old version again, takes writes and is in rotation; the run begins those steps again when resumed.")
			}
		case len(res.Standing) > 0:
			fmt.Fprintf(stderr, "\nThe run is past its point of no return (%s ran), so it halted with the cluster serving and nothing cluster-wide undone. Where each item stands:\n  %s\n",
				res.PointOfNoReturn, termtext.Block(strings.Join(res.Standing, "\n  ")))
		}
		if res.Hold != nil && res.Status == journal.Paused {
			pausedMessage(stderr, dir, rf, l, res, cluster.Label())
			return exitError{code}
		}
		// On stderr, with --json too: automation reads the command there.
		fmt.Fprintf(stderr, "\nRun %s of cluster %s did not finish (%s). `%s` shows where it stands; fix the cause and\n  %s\nresumes it. Plugin logs: %s\n",
			res.RunID, cluster.Label(), why, statusArgs(dir, rf), resumeCommand(dir, rf, l.pb), logPath)
		return exitError{code}
	case errors.As(err, &mismatch):
		return refused(cmd, err)
	case err != nil:
		return failed(cmd, err)
	}
	if res.Status == journal.Done {
		return verifyAfterRun(cmd, l, dir, rf)
	}
	return nil
}

// adoptLegacy deals with a journal an older upshift left at the top of the
// state folder, which says nothing of its cluster. It is filed under this
// cluster when the playbook and variables are those it was run with (the
// same cluster for sure), or when --legacy-state adopt says so; set aside
// with --legacy-state set-aside; otherwise the run is refused, nothing
// changed, saying how to choose.
func adoptLegacy(cmd *cobra.Command, store *journal.Store, cluster *journal.Cluster, l *loaded, rf runFlags) error {
	legacy, err := store.Legacy()
	if err != nil {
		return refused(cmd, fmt.Errorf("the journal an older upshift left in %s cannot be read: %w", store.Dir(), err))
	}
	if legacy == nil {
		return nil
	}
	how := rf.legacy
	if how == "" && store.LegacySameDigest(legacy, digest(l.pb)) {
		how = legacyAdopt
	}
	if how == "" {
		return refused(cmd, fmt.Errorf(`the state folder %s holds the journal of an older upshift, which kept one journal per folder, not per cluster: run %s (%s, started %s, playbook %s). The playbook or its variables differ from that run's, so upshift cannot tell whether it was this cluster %s (%s).
  If it was, `+"`upshift run %s --legacy-state adopt`"+` files it under this cluster (an unfinished run is then resumed, a finished one stays finished).
  If not, `+"`--legacy-state set-aside`"+` moves it, untouched, to %s/legacy-<time>/.`,
			store.Dir(), legacy.ID, legacy.Status, legacy.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"), legacy.Playbook, cluster.Label(), cluster.Describe(), l.pb.Dir, store.Dir()))
	}
	// An older upshift locks the folder itself: hold that lock while moving.
	lock, err := journal.Acquire(store.Dir(), journal.CurrentOwner(""))
	if err != nil {
		return lockError(cmd, err)
	}
	defer lock.Release()
	switch how {
	case legacyAdopt:
		to, err := store.AdoptLegacy(cluster)
		if err != nil {
			return refused(cmd, err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Moved the journal of an older upshift (run %s, %s) to %s: it is this cluster's now.\n", legacy.ID, legacy.Status, to)
	case legacySetAside:
		to, err := store.SetAsideLegacy()
		if err != nil {
			return refused(cmd, err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Moved the journal of an older upshift (run %s, %s) to %s, untouched.\n", legacy.ID, legacy.Status, to)
	}
	return nil
}

// otherClusters mentions the unfinished runs of other clusters in the same
// state folder, which are never adopted. Beginning a cluster's first run
// while another cluster's run is unfinished takes --new-run: the playbook
// may point at the same cluster described differently (a fixed socket
// path), whose run should be resumed rather than begun again.
func otherClusters(cmd *cobra.Command, store *journal.Store, cluster *journal.Cluster, beginning, newRun bool) error {
	if store == nil {
		return nil // a shared backend (PostgreSQL) holds many clusters by design
	}
	all, err := store.Clusters()
	if err != nil {
		return failed(cmd, err)
	}
	var lines []string
	for _, c := range all {
		if c.Cluster.ID == cluster.ID || !c.Unfinished() {
			continue
		}
		line := fmt.Sprintf("cluster %s (%s): run %s is %s, last updated %s", c.Cluster.Label(), c.Cluster.Describe(), c.Current.ID, c.Current.Status, c.Current.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		if d := journal.Diff(c.Cluster, cluster); len(d) > 0 {
			line += "; it differs from this cluster in:\n      " + strings.Join(d, "\n      ")
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return nil
	}
	if beginning && !newRun {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: this playbook points at cluster %s (%s), which has no run in %s, but another cluster there has an unfinished run:\n  %s\nNothing was changed. Its steps are never taken as this cluster's.\n  If this is another cluster, `--new-run` begins its own run; the other run stays as it is.\n  If it is the same cluster described differently, put the previous values back and `upshift run` resumes its run, or `upshift abort --cluster ID` gives that run up.\n",
			cluster.Label(), cluster.Describe(), store.Dir(), strings.Join(lines, "\n  "))
		return exitError{exitRefused}
	}
	for _, line := range lines {
		fmt.Fprintf(cmd.ErrOrStderr(), "Note: this state folder also holds an unfinished run of another %s. It is not this cluster's and stays as it is.\n", line)
	}
	return nil
}

// resumeCommand is the command that resumes the run: every flag it was
// given, sensitive variable values elided.
func resumeCommand(dir string, rf runFlags, pb *playbooks.Playbook) string {
	var extra []string
	if rf.state != "" {
		extra = append(extra, "--state-dir", shellQuote(rf.state))
	}
	extra = append(extra, rf.backend.args()...)
	if rf.parallelism != defaultParallelism {
		extra = append(extra, "--parallelism", strconv.Itoa(rf.parallelism))
	}
	if rf.asJSON {
		extra = append(extra, "--json")
	}
	if rf.noPreflight {
		extra = append(extra, "--skip-preflight")
	}
	return commandWith("run", dir, rf.vars, pb, extra...)
}

// commandWith is `upshift VERB DIR` with the -var-file and -var flags as
// given (sensitive values elided), then extra: a command in a hint that
// the operator can copy as it is.
func commandWith(verb, dir string, vf varFlags, pb *playbooks.Playbook, extra ...string) string {
	args := []string{"upshift", verb, shellQuote(dir)}
	for _, f := range vf.varFiles {
		args = append(args, "-var-file", shellQuote(f))
	}
	elided := false
	for _, v := range vf.vars {
		name, _, _ := strings.Cut(v, "=")
		if pv := pb.Variables[strings.TrimSpace(name)]; pv != nil && pv.Sensitive {
			args = append(args, "-var", shellQuote(strings.TrimSpace(name)+"=(sensitive: give it again)"))
			elided = true
			continue
		}
		args = append(args, "-var", shellQuote(v))
	}
	s := strings.Join(append(args, extra...), " ")
	if elided {
		s += "   (sensitive values elided)"
	}
	return s
}

func statusArgs(dir string, rf runFlags) string {
	s := "upshift status " + shellQuote(dir)
	if rf.state != "" {
		s += " --state-dir " + shellQuote(rf.state)
	}
	if a := rf.backend.args(); len(a) > 0 {
		s += " " + strings.Join(a, " ")
	}
	return s
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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

// outageSink passes a run's events on, adding its write-outage window
// (journal.Run.WriteOutage, as status computes it): a write_outage event
// as soon as the window closes (an enable finished after read-only: the
// first node on the new version takes writes), so that a pipeline knows it
// then, and the window on run_finished. It reads the journal only when an
// enable finishes before that, and when the run finishes.
type outageSink struct {
	next runner.Sink
	load func() (*journal.Run, error)

	mu sync.Mutex
	// readOnly is when this process last saw a read_only step finish: the
	// journal of a run returned to its start keeps only the undo's record.
	readOnly time.Time
	// maybe: a read_only step finished, here or in the run this resumes.
	maybe bool
	sent  bool
	last  *journal.Outage
}

// window is the window as the run's last event said it (nil if none).
func (s *outageSink) window() *journal.Outage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// current reads the window from the journal, its start filled from this
// process's events when the journal no longer keeps it.
func (s *outageSink) current() *journal.Outage {
	run, err := s.load()
	if err != nil {
		return nil // the window is a report: the run goes on without it
	}
	o := run.WriteOutage()
	s.mu.Lock()
	defer s.mu.Unlock()
	if o != nil && o.From.IsZero() && o.State() == journal.OutageReturned && !s.readOnly.IsZero() && s.readOnly.Before(o.Reopened) {
		o.From = s.readOnly
	}
	return o
}

func (s *outageSink) Emit(e runner.Event) {
	verb := e.Action[strings.LastIndexByte(e.Action, '.')+1:]
	s.mu.Lock()
	switch {
	case e.Type == runner.StepFinished && verb == "read_only":
		s.maybe = true
		if e.Time.After(s.readOnly) {
			s.readOnly = e.Time
		}
	case e.Type == runner.StepRestored:
		s.maybe = true // the journal says which
	}
	check := e.Type == runner.StepFinished && verb == "enable" && s.maybe && !s.sent
	s.mu.Unlock()

	if e.Type == runner.RunFinished {
		if o := s.current(); o != nil {
			e.WriteOutage = o
			s.mu.Lock()
			s.last = o
			s.mu.Unlock()
		}
	}
	s.next.Emit(e)
	if !check {
		return
	}
	if o := s.current(); o != nil && o.State() == journal.OutageClosed {
		s.mu.Lock()
		first := !s.sent
		s.sent, s.last = true, o
		s.mu.Unlock()
		if first {
			s.next.Emit(runner.Event{Time: time.Now(), Type: runner.WriteOutageClosed, Message: o.Line(clockTime), WriteOutage: o})
		}
	}
}

// clockTime is a time of day as the console shows one: local, with its
// zone.
func clockTime(t time.Time) string { return t.Local().Format("15:04:05 MST") }
