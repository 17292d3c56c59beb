package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/cmd/upshift/internal/lab"
	"github.com/upshift-dev/upshift/cmd/upshift/internal/report"
	"github.com/upshift-dev/upshift/cmd/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/plugins/haproxy/haproxyd"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxd"
)

type labFlags struct {
	dir   string
	bin   string
	db    string
	lb    string
	nodes string
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", "lab", "the lab's folder")
	cmd.Flags().StringVar(&f.lb, "lb", "haproxy", "load balancer in front (up, demo): haproxy or nginx")
	cmd.Flags().StringVar(&f.nodes, "nodes", "process", "how the playbook reaches the nodes (up, demo): process, or ssh through an sshd on loopback")
	cmd.Flags().StringVar(&f.db, "db", "sqlite", "database under the nodes (up, demo): sqlite, or postgres or mysql (a server of the lab's own, in its folder; UPSHIFT_LAB_POSTGRES / UPSHIFT_LAB_MYSQL name another)")
	cmd.Flags().StringVar(&f.bin, "bin", "", "folder of platformd and the plugins (default: the folder of this upshift)")
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
			s, err := lab.UpWith(cmd.Context(), lab.Options{Dir: f.dir, Bin: f.binDir(), Database: f.db, LoadBalancer: f.lb, NodePlugin: f.nodes}, cmd.OutOrStdout())
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, f) },
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.playbook, "playbook", "playbooks/rolling-upgrade", "the playbook to run")
	cmd.Flags().DurationVar(&f.warmup, "warmup", 2*time.Second, "traffic before the upgrade starts (and after it ends)")
	cmd.Flags().IntVar(&f.workers, "workers", 8, "concurrent traffic clients")
	cmd.Flags().DurationVar(&f.durationCap, "duration-cap", 2*time.Minute, "stop the run (and fail) if the upgrade takes longer")
	// A stand-in for `upshift run`, for testing the orchestration: it is
	// given the same arguments (run <playbook> -var-file <vars> --json).
	cmd.Flags().StringVar(&f.runCmd, "run-cmd", "", "command to run instead of this upshift (space-separated argv)")
	_ = cmd.Flags().MarkHidden("run-cmd")
	return cmd
}

func runDemo(cmd *cobra.Command, f demoFlags) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if old, err := lab.Load(f.dir); err == nil {
		fmt.Fprintf(out, "Removing the earlier lab in %s.\n", old.Dir)
		if err := lab.Down(old, io.Discard); err != nil {
			return runError(cmd, err)
		}
		if err := lab.Purge(old); err != nil {
			return runError(cmd, err)
		}
	}
	fmt.Fprintln(out, "Starting the lab:")
	s, err := lab.UpWith(ctx, lab.Options{Dir: f.dir, Bin: f.binDir(), Database: f.db, LoadBalancer: f.lb, NodePlugin: f.nodes}, out)
	if err != nil {
		return runError(cmd, err)
	}
	self, err := os.Executable()
	if err != nil {
		return runError(cmd, err)
	}
	// The lab runs its own copy of the playbook, so that its lock file and
	// journal live in the lab, not in the playbook's folder.
	playbook := filepath.Join(s.Dir, "playbook")
	if err := copyPlaybook(f.playbook, playbook); err != nil {
		return runError(cmd, err)
	}
	if b, err := exec.CommandContext(ctx, self, "init", playbook, "-var-file", s.VarsFile()).CombinedOutput(); err != nil {
		return runError(cmd, fmt.Errorf("upshift init: %v\n%s", err, b))
	}

	fmt.Fprintf(out, "Traffic through %s (%s): %d clients (slow reads, fast reads, writes).\n", s.URL(), s.LB, f.workers)
	start := time.Now()
	// The load's own bound: the run's cap and the warm-ups around it.
	load := traffic.Start(ctx, traffic.Options{URL: s.URL(), Workers: f.workers, Duration: f.durationCap + 2*f.warmup + 10*time.Second})
	time.Sleep(f.warmup)

	upgradeStart := time.Now()
	eventsPath := filepath.Join(s.Dir, "events.jsonl")
	argv := []string{self}
	if f.runCmd != "" {
		argv = strings.Fields(f.runCmd)
	}
	runCtx, cancelRun := context.WithTimeout(ctx, f.durationCap)
	runErr := runAndWatch(runCtx, out, eventsPath, argv[0], append(argv[1:], "run", playbook, "-var-file", s.VarsFile(), "--json")...)
	if runCtx.Err() == context.DeadlineExceeded {
		runErr = fmt.Errorf("stopped after --duration-cap %s: %v", f.durationCap, runErr)
	}
	cancelRun()
	upgradeEnd := time.Now()
	time.Sleep(f.warmup)
	samples := load.Stop()
	end := time.Now()

	lost, err := traffic.Missing(ctx, s.URL(), samples)
	if err != nil {
		return runError(cmd, err)
	}
	sum := traffic.Summarize(samples, lost, upgradeStart)
	checks := finalChecks(ctx, s, "2")
	var nodes []report.Node
	for _, n := range s.Inspect(ctx).Nodes {
		nodes = append(nodes, report.Node{Name: n.Name, Version: n.Version, InLB: n.InRotation(), Healthy: n.Healthy})
	}
	allOK := runErr == nil && sum.Clean()
	for _, c := range checks {
		allOK = allOK && c.OK
	}

	evb, _ := os.ReadFile(eventsPath)
	reportPath := filepath.Join(s.Dir, "report.html")
	rf, err := os.Create(reportPath)
	if err != nil {
		return runError(cmd, err)
	}
	title := fmt.Sprintf("upshift demo: rolling upgrade of 3 nodes from version 1 to 2 (%s, %s)", s.LB, s.DB.Engine)
	werr := report.Write(rf, report.Data{Title: title, Start: start, End: end, UpgradeStart: upgradeStart, UpgradeEnd: upgradeEnd,
		Events: report.ParseEvents(bytes.NewReader(evb)), Samples: samples, Summary: sum, Nodes: nodes, Checks: checks})
	if cerr := rf.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return runError(cmd, werr)
	}
	if samplesFile, err := os.Create(filepath.Join(s.Dir, "traffic.json")); err == nil {
		_ = json.NewEncoder(samplesFile).Encode(samples)
		samplesFile.Close()
	}

	fmt.Fprintf(out, "\nUpgrade %s in %s.\n", map[bool]string{true: "finished", false: "DID NOT FINISH"}[runErr == nil], upgradeEnd.Sub(upgradeStart).Round(100*time.Millisecond))
	fmt.Fprint(out, sum.String())
	fmt.Fprintln(out, "final state:")
	for _, c := range checks {
		fmt.Fprintf(out, "  %-44s %-6s %s\n", c.What, map[bool]string{true: "ok", false: "FAILED"}[c.OK], c.Got)
	}
	fmt.Fprintf(out, "\nReport: %s\nThe lab stays up for inspection: `upshift lab status --dir %s`; `make demo-down` stops it.\n", reportPath, f.dir)
	if runErr != nil {
		fmt.Fprintf(out, "The run failed: %v. `upshift status %s` shows where it stands.\n", runErr, playbook)
	}
	if !allOK {
		return exitError{exitInvalid}
	}
	fmt.Fprintln(out, "Zero failed requests, zero lost writes: the upgrade was invisible to clients.")
	return nil
}

// runAndWatch runs upshift with --json, saves its events to path and prints
// one line per finished or failed step.
func runAndWatch(ctx context.Context, out io.Writer, path, self string, args ...string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := exec.CommandContext(ctx, self, args...)
	// At the cap, ask as an operator would (upshift run lets running steps
	// finish on SIGTERM), then kill if it lingers.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 15 * time.Second
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		f.Write(append(line, '\n'))
		var e struct {
			Type, Address, Error, Message string
			Duration                      int64 `json:"duration_ns"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		switch e.Type {
		case "step_finished":
			fmt.Fprintf(out, "  %-34s done   %s\n", e.Address, time.Duration(e.Duration).Round(time.Millisecond))
		case "step_failed":
			fmt.Fprintf(out, "  %-34s FAILED %s\n", e.Address, e.Error)
		case "run_finished":
			fmt.Fprintf(out, "  run: %s\n", e.Message)
		}
	}
	if err := c.Wait(); err != nil {
		return fmt.Errorf("%v %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// finalChecks inspects every node and HAProxy; with want set, a node must
// run that version, be healthy and writable, use database B and have the
// marker.
func finalChecks(ctx context.Context, s *lab.State, want string) []report.Check {
	var checks []report.Check
	client := &http.Client{Timeout: 3 * time.Second}
	for _, n := range s.Nodes {
		ln := s.Node(n)
		var h struct {
			Status   string `json:"status"`
			Version  string `json:"version"`
			ReadOnly bool   `json:"read_only"`
		}
		got := "not answering"
		ok := false
		if resp, err := client.Get("http://" + n.Address + "/healthz"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			got = fmt.Sprintf("pid %d, %s, version %s, read-only %t", ln.Pid(), h.Status, h.Version, h.ReadOnly)
			ok = resp.StatusCode == http.StatusOK && (want == "" || h.Version == want) && !h.ReadOnly
		}
		checks = append(checks, report.Check{What: n.Name + ": healthy, writable, version " + orAny(want), OK: ok, Got: got})
		if want == "" {
			continue
		}
		var v struct {
			Version string `json:"version"`
		}
		vgot := "not answering"
		if resp, err := client.Get("http://" + n.Address + "/version"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			vgot = fmt.Sprintf("HTTP %d, version %q", resp.StatusCode, v.Version)
		}
		checks = append(checks, report.Check{What: n.Name + ": /version says " + want, OK: v.Version == want, Got: vgot})
		var cfg map[string]any
		b, _ := os.ReadFile(n.ConfigFile)
		_ = json.Unmarshal(b, &cfg)
		dsn := fmt.Sprint(cfg["db.dsn"])
		usesB := dsn == s.DB.B || (s.DB.Engine != lab.SQLite && strings.Contains(dsn, s.DB.B))
		checks = append(checks, report.Check{What: n.Name + ": uses database B", OK: usesB, Got: lab.RedactDSN(dsn)})
		_, err := os.Stat(filepath.Join(n.DataDir, "rolling-upgrade"))
		checks = append(checks, report.Check{What: n.Name + ": rolling-upgrade marker", OK: err == nil, Got: filepath.Join(n.DataDir, "rolling-upgrade")})
	}
	if s.LB == "nginx" {
		servers, err := nginxd.ReadUpstream(s.NginxCtl().Upstream)
		if err != nil {
			return append(checks, report.Check{What: "nginx: every node in rotation", Got: err.Error()})
		}
		for _, sv := range servers {
			checks = append(checks, report.Check{What: "nginx: " + sv.Name + " in rotation", OK: !sv.Down && s.NginxCtl().Running(),
				Got: map[bool]string{true: "marked down", false: "in the upstream"}[sv.Down]})
		}
		return checks
	}
	hc := haproxyd.NewClient(s.HAProxyCtl().Socket, 2*time.Second)
	stats, _, err := hc.Servers(ctx, lab.Backend)
	states, err2 := hc.ServersState(ctx, lab.Backend)
	if err != nil || err2 != nil {
		return append(checks, report.Check{What: "haproxy: every node in rotation", Got: fmt.Sprint(errors.Join(err, err2))})
	}
	admin := map[string]int{}
	for _, st := range states {
		admin[st.Name] = st.AdminState
	}
	for _, st := range stats {
		name := st["svname"]
		checks = append(checks, report.Check{What: "haproxy: " + name + " UP and in rotation", OK: st["status"] == "UP" && admin[name] == 0,
			Got: fmt.Sprintf("status %s, admin state %d", st["status"], admin[name])})
	}
	return checks
}

func orAny(v string) string {
	if v == "" {
		return "any"
	}
	return v
}

// copyPlaybook copies the .hcl files of a playbook folder into dst.
func copyPlaybook(src, dst string) error {
	files, err := filepath.Glob(filepath.Join(src, "*.hcl"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s has no .hcl files", src)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if filepath.Base(f) == "upshift.lock.hcl" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
