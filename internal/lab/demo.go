package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/internal/report"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/runner/journal"
)

// DemoOptions are the inputs of Demo.
type DemoOptions struct {
	Options
	// Upshift is the upshift binary that pins and runs the playbook.
	Upshift string
	// Playbook is the playbook folder to copy into the lab and run.
	Playbook string
	// Warmup is the traffic before the upgrade starts and after it ends.
	Warmup time.Duration
	// Workers is the number of concurrent traffic clients.
	Workers int
	// DurationCap stops the run, and fails the demo, past this time.
	DurationCap time.Duration
	// RunCmd, when set, replaces Upshift for the run (space-separated argv,
	// given "run <playbook> -var-file <vars> --json"): a stand-in for
	// testing the orchestration.
	RunCmd string
	// State is where upshift keeps the run's state: "" or "local" (the
	// lab's copy of the playbook), or "postgres" (a server of the lab's
	// own, DIR/state-postgres, as a team's shared one).
	State string
}

// Demo starts a fresh lab (stopping and deleting an earlier one in the same
// folder), pins the plugins, starts traffic through the load balancer, runs
// the playbook, checks that every acknowledged write is still there and that
// every node ended on version 2 and in rotation, prints the verdict and
// writes an HTML report. It reports true only with zero failed requests,
// zero lost writes and every final check passing; an error means the demo
// itself could not be carried out.
func Demo(ctx context.Context, f DemoOptions, out io.Writer) (bool, error) {
	if old, err := Load(f.Dir); err == nil {
		fmt.Fprintf(out, "Removing the earlier lab in %s.\n", old.Dir)
		if err := Down(old, io.Discard); err != nil {
			return false, err
		}
		if err := Purge(old); err != nil {
			return false, err
		}
	}
	fmt.Fprintln(out, "Starting the lab:")
	s, err := UpWith(ctx, f.Options, out)
	if err != nil {
		return false, err
	}
	self := f.Upshift
	// The lab runs its own copy of the playbook, so that its lock file and
	// journal live in the lab, not in the playbook's folder.
	playbook := filepath.Join(s.Dir, "playbook")
	if err := CopyPlaybook(f.Playbook, playbook); err != nil {
		return false, err
	}
	if f.State == "postgres" {
		env, err := StartStateDB(ctx, s.Dir)
		if err != nil {
			return false, err
		}
		// upshift (run, and the status and report the lab suggests)
		// finds the state server through its environment.
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			if err := os.Setenv(k, v); err != nil {
				return false, err
			}
		}
		fmt.Fprintf(out, "State: PostgreSQL of the lab's own in %s (UPSHIFT_STATE=postgres; the DSN, password and key files in its environment: %s).\n", filepath.Join(s.Dir, stateDBDir), strings.Join(env[1:], " "))
	}
	if b, err := exec.CommandContext(ctx, self, "init", playbook, "-var-file", s.VarsFile()).CombinedOutput(); err != nil {
		return false, fmt.Errorf("upshift init: %v\n%s", err, b)
	}

	affinity := "session affinity off: every request is balanced"
	if s.Affinity {
		affinity = "session affinity on: " + map[bool]string{true: "hash $cookie_" + SessionCookie, false: "cookie " + HAProxyCookie}[s.LB == "nginx"]
	}
	fmt.Fprintf(out, "Traffic through %s (%s, %s): %d sessions, each with its own cookies (slow reads, fast reads, reads of its own writes, writes).\n", s.URL(), s.LB, affinity, f.Workers)
	start := time.Now()
	// The load balancer's own counts over the same load, set beside the
	// checker's at the end: they must agree.
	lbCount, err := s.StartLBCount(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the load balancer's counters: %w", err)
	}
	// The load's own bound: the run's cap and the warm-ups around it.
	load := traffic.Start(ctx, traffic.Options{URL: s.URL(), Workers: f.Workers, Duration: f.DurationCap + 2*f.Warmup + 10*time.Second})
	time.Sleep(f.Warmup)

	upgradeStart := time.Now()
	eventsPath := filepath.Join(s.Dir, "events.jsonl")
	argv := []string{self}
	if f.RunCmd != "" {
		argv = strings.Fields(f.RunCmd)
	}
	runCtx, cancelRun := context.WithTimeout(ctx, f.DurationCap)
	runErr := runAndWatch(runCtx, out, eventsPath, argv[0], append(argv[1:], "run", playbook, "-var-file", s.VarsFile(), "--json", "--auto-approve")...)
	if runCtx.Err() == context.DeadlineExceeded {
		runErr = fmt.Errorf("stopped after --duration-cap %s: %v", f.DurationCap, runErr)
	}
	cancelRun()
	upgradeEnd := time.Now()
	time.Sleep(f.Warmup)
	samples := load.Stop()
	end := time.Now()
	lbSeen, lbErr := lbCount.Since(ctx)

	lost, err := traffic.Missing(ctx, s.URL(), samples)
	if err != nil {
		return false, err
	}
	sum := traffic.Summarize(samples, lost, upgradeStart)
	checks := FinalChecks(ctx, s, "2")
	checks = append(checks, verifyCheck(ctx, self, playbook, s.VarsFile()))
	var nodes []report.Node
	for _, n := range s.Inspect(ctx).Nodes {
		nodes = append(nodes, report.Node{Name: n.Name, Version: n.Version, InLB: n.InRotation(), Healthy: n.Healthy})
	}
	agreement := Agree(lbCount.Source, lbSeen, sum)
	allOK := runErr == nil && sum.Clean() && lbErr == nil && agreement.OK()
	for _, c := range checks {
		allOK = allOK && c.OK
	}

	evb, _ := os.ReadFile(eventsPath)
	reportPath := filepath.Join(s.Dir, "report.html")
	rf, err := os.Create(reportPath)
	if err != nil {
		return false, err
	}
	title := fmt.Sprintf("upshift demo: rolling upgrade of 3 nodes from version 1 to 2 (%s, %s)", s.LB, s.DB.Engine)
	werr := report.Write(rf, report.Data{Title: title, Start: start, End: end, UpgradeStart: upgradeStart, UpgradeEnd: upgradeEnd,
		Events: report.ParseEvents(bytes.NewReader(evb)), Samples: samples, Summary: sum, Nodes: nodes, Checks: checks, WriteOutage: RunOutage(evb)})
	if cerr := rf.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, werr
	}
	if samplesFile, err := os.Create(filepath.Join(s.Dir, "traffic.json")); err == nil {
		_ = json.NewEncoder(samplesFile).Encode(samples)
		samplesFile.Close()
	}

	fmt.Fprintf(out, "\nUpgrade %s in %s.\n", map[bool]string{true: "finished", false: "DID NOT FINISH"}[runErr == nil], upgradeEnd.Sub(upgradeStart).Round(100*time.Millisecond))
	// The window as the run reported it on its --json stream (with a
	// PostgreSQL state too); the journal's only if the stream lacked it,
	// said as such.
	if o := RunOutage(evb); o != nil {
		fmt.Fprintf(out, "write outage: %s\n", o.Line(clockTime))
	} else if o := demoOutage(playbook); o != nil {
		fmt.Fprintf(out, "write outage (from the journal: the run's --json stream did not report it): %s\n", o.Line(clockTime))
	}
	fmt.Fprint(out, sum.String())
	if lbErr != nil {
		fmt.Fprintf(out, "load balancer: its counters could not be read: %v\n", lbErr)
	} else {
		fmt.Fprint(out, agreement.String())
	}
	fmt.Fprintln(out, "final state:")
	for _, c := range checks {
		fmt.Fprintf(out, "  %-44s %-6s %s\n", c.What, map[bool]string{true: "ok", false: "FAILED"}[c.OK], c.Got)
	}
	// The command that stops it, for the folder this lab is in (make
	// demo-down knows only the default one).
	fmt.Fprintf(out, "\nReport: %s\nThe lab stays up for inspection: `upshift lab status --dir %s`; `upshift lab down --dir %s` stops it.\n", reportPath, f.Dir, f.Dir)
	if runErr != nil {
		fmt.Fprintf(out, "The run failed: %v. `upshift status %s` shows where it stands.\n", runErr, playbook)
	}
	if allOK {
		fmt.Fprintln(out, "Zero failed requests, zero lost writes: the upgrade was invisible to clients.")
	}
	return allOK, nil
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

// verifyCheck asks the plugins, through the playbook's verify blocks
// (`upshift verify`), what any cluster's operator can ask: every node on
// X+1, writable, with its marker, on one database, in rotation.
func verifyCheck(ctx context.Context, self, playbook, varsFile string) report.Check {
	out, err := exec.CommandContext(ctx, self, "verify", playbook, "-var-file", varsFile).CombinedOutput()
	text := strings.TrimSpace(string(out))
	got := text
	if i := strings.LastIndexByte(text, '\n'); i >= 0 && err == nil {
		got = text[i+1:] // "All 2 checks passed (..)."
	}
	return report.Check{What: "upshift verify: the playbook's end state", OK: err == nil, Got: got}
}

// RunOutage is the write-outage window a `run --json` stream reported:
// its run_finished line's (the window as the run ended), else its
// write_outage line's; nil when neither holds one.
func RunOutage(stream []byte) *journal.Outage {
	var found *journal.Outage
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Type        string          `json:"type"`
			WriteOutage *journal.Outage `json:"write_outage"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.WriteOutage == nil {
			continue
		}
		switch e.Type {
		case "run_finished":
			return e.WriteOutage
		case "write_outage":
			found = e.WriteOutage
		}
	}
	return found
}

// clockTime is a time of day as the demo prints one.
func clockTime(t time.Time) string { return t.Local().Format("15:04:05 MST") }

// demoOutage is the write-outage window of the run just made, from the
// journal of the lab's one cluster (nil with a PostgreSQL state, or when
// the run did not go read-only).
func demoOutage(playbook string) *journal.Outage {
	store, err := journal.OpenStore(filepath.Join(playbook, ".upshift", "state"))
	if err != nil {
		return nil
	}
	clusters, err := store.Clusters()
	if err != nil || len(clusters) != 1 {
		return nil
	}
	return clusters[0].Current.WriteOutage()
}

// FinalChecks inspects every node and HAProxy; with want set, a node must
// run that version, be healthy and writable, use database B and have the
// marker.
func FinalChecks(ctx context.Context, s *State, want string) []report.Check {
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
		// The node's generated files are its own version's: the manifest
		// the lab had it render on version 1 was purged, not served stale.
		var m struct {
			Version string `json:"version"`
		}
		mgot := "not answering"
		if resp, err := client.Get("http://" + n.Address + "/manifest"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			mgot = fmt.Sprintf("HTTP %d, rendered by version %q (%s)", resp.StatusCode, m.Version, resp.Header.Get("X-Platform-Generated"))
		}
		checks = append(checks, report.Check{What: n.Name + ": no stale generated file", OK: m.Version == want, Got: mgot})
		var cfg map[string]any
		b, _ := os.ReadFile(n.ConfigFile)
		_ = json.Unmarshal(b, &cfg)
		dsn := fmt.Sprint(cfg["db.dsn"])
		usesB := dsn == s.DB.B || (s.DB.Engine != SQLite && strings.Contains(dsn, s.DB.B))
		checks = append(checks, report.Check{What: n.Name + ": uses database B", OK: usesB, Got: RedactDSN(dsn)})
		_, err := os.Stat(filepath.Join(n.DataDir, "rolling-upgrade"))
		checks = append(checks, report.Check{What: n.Name + ": rolling-upgrade marker", OK: err == nil, Got: filepath.Join(n.DataDir, "rolling-upgrade")})
	}
	if s.LB == "nginx" {
		servers, err := nginxctl.ReadUpstream(s.NginxCtl().Upstream)
		if err != nil {
			return append(checks, report.Check{What: "nginx: every node in rotation", Got: err.Error()})
		}
		for _, sv := range servers {
			checks = append(checks, report.Check{What: "nginx: " + sv.Name + " in rotation", OK: !sv.Down && s.NginxCtl().Running(),
				Got: map[bool]string{true: "marked down", false: "in the upstream"}[sv.Down]})
		}
		return checks
	}
	hc := runtimeapi.NewClient(s.HAProxyCtl().Socket, 2*time.Second)
	stats, _, err := hc.Servers(ctx, Backend)
	states, err2 := hc.ServersState(ctx, Backend)
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

// CopyPlaybook copies the .hcl files of a playbook folder into dst.
func CopyPlaybook(src, dst string) error {
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
