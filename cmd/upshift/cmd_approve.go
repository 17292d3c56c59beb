package main

// The operator's consent: run asks for "yes" on a terminal before it
// changes anything (--auto-approve for CI), a run that waits at a gate says
// how to continue it, and approve continues it.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
)

func (rf *runFlags) registerApproval(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&rf.autoApprove, "auto-approve", false, "run without asking for yes first (CI); without a terminal, run refuses unless given this or a saved plan")
	cmd.Flags().StringVar(&rf.target, "target", "", "upgrade this one rollout item (after the cluster-wide steps), then pause: a canary")
}

// stdinIsTerminal tells whether r is a terminal someone can answer on.
// Tests replace it.
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// confirm shows what the run is about to do and goes on only on "yes":
// what a new run will change (its batches, gates and point of no return),
// or where a resumed run stands and which gate answering passes. Without a
// terminal to ask on it refuses, unless the operator approved beforehand
// (--auto-approve, a saved plan, upshift approve).
func confirm(cmd *cobra.Command, dir string, rf runFlags, l *loaded, who string, prev *journal.Run, beginning bool) error {
	stderr := cmd.ErrOrStderr()
	if rf.approve {
		if beginning || runner.WaitingGate(prev) == "" {
			status := "none"
			if prev != nil {
				status = fmt.Sprintf("run %s is %s", prev.ID, prev.Status)
			}
			fmt.Fprintf(stderr, "Error: nothing to approve: no run of %s waits at a gate (%s). `upshift run %s` begins or resumes a run; nothing was changed.\n", who, status, shellQuote(dir))
			return exitError{exitUsage}
		}
		return nil
	}
	if rf.autoApprove {
		return nil
	}
	in := cmd.InOrStdin()
	if !stdinIsTerminal(in) {
		fmt.Fprintf(stderr, "Error: upshift run changes the cluster, so it asks for yes first, and there is no terminal to ask on. Pass --auto-approve (CI), or save a plan and apply it:\n  %s\n  upshift run upgrade.plan\nNothing was changed.\n", commandWith("plan", dir, rf.vars, l.pb, "-out", "upgrade.plan"))
		return exitError{exitUsage}
	}
	w := cmd.OutOrStdout()
	if rf.asJSON {
		w = stderr
	}
	if beginning {
		fmt.Fprintf(w, "upshift run will change %s:\n", who)
		if err := l.plan.WriteSummary(w); err != nil {
			return runError(cmd, err)
		}
		if rf.target != "" {
			fmt.Fprintf(w, "  --target %s: only that item is upgraded (after what it waits for), then the run pauses.\n", rf.target)
		}
	} else {
		fmt.Fprintf(w, "upshift run will resume run %s of %s, %s since %s.\n", prev.ID, who, prev.Status, prev.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
		if g := runner.WaitingGate(prev); g != "" {
			fmt.Fprintf(w, "It waits at %s: answering yes approves it, and the rollout goes on.\n", g)
		}
		if err := l.plan.WriteSummary(w); err != nil {
			return runError(cmd, err)
		}
	}
	fmt.Fprint(w, "\nOnly 'yes' goes on. Run it? ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		fmt.Fprintln(stderr, "Cancelled: nothing was changed.")
		return exitError{exitStopped}
	}
	return nil
}

// approver names who continues a run, for a gate's journal record.
func approver(rf runFlags) string {
	o := journal.CurrentOwner("")
	how := "upshift run"
	if rf.approve {
		how = "upshift approve"
	}
	return fmt.Sprintf("%s@%s (%s)", o.User, o.Host, how)
}

// pausedMessage says where a run that held waits and the exact command
// that continues it.
func pausedMessage(w io.Writer, dir string, rf runFlags, l *loaded, res *runner.Result, cluster string) {
	rf.target = ""
	resume := resumeCommand(dir, rf, l.pb)
	h := res.Hold
	var where string
	if h.Gate != nil {
		what := "approval"
		if !h.Gate.Gate.Approval() {
			what = "the rest of its bake"
		}
		where = fmt.Sprintf("at %s, %s of rollout %q, waiting for %s", h.Gate.Addr, h.Gate.Gate.Where(), h.Gate.Rollout.Name, what)
	} else {
		where = fmt.Sprintf("after item %q of --target, which is done", h.Target)
	}
	approve := strings.Replace(resume, "upshift run ", "upshift approve ", 1)
	fmt.Fprintf(w, "\nRun %s of cluster %s is paused %s. Nothing was undone; the nodes done so far serve on the new version.\nTo continue, run\n  %s\nor, to approve without being asked,\n  %s\n",
		res.RunID, cluster, termtext.Block(where), resume, approve)
}

func newApproveCommand() *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "approve DIR",
		Short: "Approve the gate a paused run waits at, and continue the run",
		Long: `approve continues a run that waits at an approval gate of its rollout
(pause_after_batch, or a gate block without bake): it records who approved
the gate in the journal and runs on, without asking, to the next gate or the
end. It takes the flags run takes. With no run waiting at a gate it changes
nothing and exits 2.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rf.approve, rf.autoApprove = true, true
			return runPlaybook(cmd, args[0], rf)
		},
	}
	rf.vars.register(cmd)
	rf.backend.register(cmd)
	cmd.Flags().StringVar(&rf.state, "state-dir", "", "state folder (default DIR/.upshift/state)")
	cmd.Flags().IntVar(&rf.parallelism, "parallelism", defaultParallelism, "most steps running at once")
	cmd.Flags().BoolVar(&rf.asJSON, "json", false, "print one JSON event per line instead of the console view")
	return cmd
}
