package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/traffic"
)

const shippedPlaybook = "../../playbooks/rolling-upgrade"

func needHAProxy(t *testing.T) {
	t.Helper()
	needBinaries(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
			t.Fatal("haproxy is not installed: run .ci/setup (make test does)")
		}
	}
}

// labDown stops a test's lab whatever happened.
func labDown(t *testing.T, dir string) {
	t.Cleanup(func() {
		if s, err := lab.Load(dir); err == nil {
			_ = lab.Down(s, io.Discard)
		}
	})
}

var (
	readsRE  = regexp.MustCompile(`reads:  (\d+) sent, (\d+) failed`)
	writesRE = regexp.MustCompile(`writes: (\d+) acknowledged, (\d+) refused cleanly while read-only \(503\), (\d+) failed otherwise`)
	lostRE   = regexp.MustCompile(`acknowledged writes missing from the final database: (\d+)`)
	missesRE = regexp.MustCompile(`read-your-writes misses: (\d+) of (\d+) reads`)
	// The load balancer's own count beside the checker's (lab.LBAgreement).
	lbAgreeRE = regexp.MustCompile(`failed requests: (\d+) by the load balancer's count .*, (\d+) by the traffic checker's, of (\d+) and (\d+) requests: (they agree|THEY DISAGREE)`)
)

// assertLBAgrees checks that the demo's load balancer counted the same
// requests and the same failed requests as its traffic checker, and
// returns the failed count.
func assertLBAgrees(t *testing.T, text string) int {
	t.Helper()
	m := lbAgreeRE.FindStringSubmatch(text)
	require.NotNil(t, m, "the demo prints the load balancer's count:\n%s", text)
	assert.Equal(t, m[1], m[2], "failed requests: load balancer vs traffic checker")
	assert.Equal(t, m[3], m[4], "requests: load balancer vs traffic checker")
	assert.Greater(t, atoi(t, m[3]), 100, "the load balancer counted the traffic")
	return atoi(t, m[2])
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

// TestDemoUpgradesWithZeroFailures is `make demo` in short: a live 3-node
// lab behind a real HAProxy, upgraded by the shipped playbook under
// traffic. The demo itself checks the final state; this test checks its
// verdict and that the traffic was real.
func TestDemoUpgradesWithZeroFailures(t *testing.T) {
	needHAProxy(t)
	dir := filepath.Join(t.TempDir(), "lab")
	labDown(t, dir)
	out, err := upshift(t, "lab", "demo", "--dir", dir, "--playbook", shippedPlaybook, "--warmup", "1500ms").CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	r := readsRE.FindStringSubmatch(text)
	require.NotNil(t, r, text)
	assert.Greater(t, atoi(t, r[1]), 100, "enough reads to see a failure")
	assert.Equal(t, "0", r[2], "failed reads")
	w := writesRE.FindStringSubmatch(text)
	require.NotNil(t, w, text)
	assert.Greater(t, atoi(t, w[1]), 10, "writes were acknowledged (on A before read-only, on B after)")
	assert.Greater(t, atoi(t, w[2]), 0, "writes were refused cleanly while read-only")
	assert.Equal(t, "0", w[3], "writes failed otherwise")
	assert.Equal(t, "0", lostRE.FindStringSubmatch(text)[1], "lost acknowledged writes")
	assert.Equal(t, 0, assertLBAgrees(t, text), "failed requests by both counts")
	// With session affinity (the lab's default) no session reads its own
	// write back as missing while old and new versions both serve.
	m := missesRE.FindStringSubmatch(text)
	require.NotNil(t, m, text)
	assert.Equal(t, "0", m[1], "read-your-writes misses")
	assert.Greater(t, atoi(t, m[2]), 20, "sessions read their own writes back")
	assert.NotContains(t, text, "FAILED")
	assert.Regexp(t, `upshift verify: the playbook's end state +ok +All 2 checks passed`, text)
	assert.Regexp(t, `write outage: writes refused for [0-9.]+m?s \(backup [0-9.]+m?s, copy [0-9.]+m?s, first item's drain \(node-\d\) [0-9.]+m?s, first item's stop to enable \(node-\d\) [0-9.]+m?s\)`, text)
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		assert.Regexp(t, n+`: no stale generated file +ok`, text)
		assert.Regexp(t, n+`: healthy, writable, version 2 +ok`, text)
		assert.Regexp(t, n+`: uses database B +ok`, text)
		assert.Regexp(t, n+`: rolling-upgrade marker +ok`, text)
		assert.Regexp(t, `haproxy: `+n+` UP and in rotation +ok`, text)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	assert.Contains(t, string(html), "<svg")
	assert.Contains(t, string(html), "migrate")
	assert.NotContains(t, string(html), "http://", "the report needs no network")

	status := runOK(t, "status", filepath.Join(dir, "playbook"))
	assert.Contains(t, status, ": done")
}

// TestDemoMatrix runs the same upgrade behind HAProxy and nginx, with the
// nodes on SQLite, PostgreSQL and MariaDB (servers of the lab's own), driven
// as local processes or over SSH through a real sshd: every cell must end
// with zero failed requests and zero lost writes. The short form; `make e2e`
// runs more combinations.
func TestDemoMatrix(t *testing.T) {
	needHAProxy(t)
	type cell struct{ lb, db, nodes string }
	cells := []cell{{"haproxy", "postgres", "process"}, {"haproxy", "mysql", "process"}, {"nginx", "sqlite", "process"}, {"haproxy", "sqlite", "ssh"}}
	if os.Getenv("UPSHIFT_E2E_FULL") != "" {
		cells = append(cells, cell{"nginx", "postgres", "process"}, cell{"nginx", "mysql", "process"}, cell{"nginx", "postgres", "ssh"})
	}
	for _, c := range cells {
		lb, db, nodes := c.lb, c.db, c.nodes
		t.Run(lb+"/"+db+"/"+nodes, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "lab")
			t.Cleanup(func() {
				if s, err := lab.Load(dir); err == nil {
					_ = lab.Down(s, io.Discard)
					_ = lab.Purge(s) // its folder, with its own database server's data
				}
			})
			out, err := upshift(t, "lab", "demo", "--dir", dir, "--lb", lb, "--db", db, "--nodes", nodes, "--playbook", shippedPlaybook, "--warmup", "1s").CombinedOutput()
			require.NoError(t, err, "%s", out)
			text := string(out)
			assert.Equal(t, "0", readsRE.FindStringSubmatch(text)[2], "failed reads")
			assert.Equal(t, "0", writesRE.FindStringSubmatch(text)[3], "failed writes")
			assert.Equal(t, "0", lostRE.FindStringSubmatch(text)[1], "lost writes")
			assert.Equal(t, 0, assertLBAgrees(t, text), "failed requests by both counts")
			assert.Regexp(t, `node-3: uses database B +ok +\S*(upshift_lab_\w+_b|b\.sqlite)`, text)
			assert.Regexp(t, lb+`: node-3 (UP and )?in rotation +ok`, text)
			assert.NotContains(t, text, "FAILED")
			if db != "sqlite" {
				// The database server is the lab's own, and goes down with it.
				s, err := lab.Load(dir)
				require.NoError(t, err)
				require.NotEmpty(t, s.DB.Server, "a server of the lab's own")
				assert.NotContains(t, s.DB.Admin, ":5432/", "not the machine's PostgreSQL")
				assert.NotContains(t, s.DB.Admin, ":3306)", "not the machine's MariaDB")
				require.NoError(t, lab.Down(s, io.Discard))
				assert.False(t, s.Running(), "lab down stops the database server too")
			}
		})
	}
}

// TestNegativeControlSeesFailures runs the same upgrade with the drain
// replaced by a kill of each node with requests in flight: the traffic
// check must see failed requests, or it could not see them at all.
func TestNegativeControlSeesFailures(t *testing.T) {
	needHAProxy(t)
	noDrain := noDrainPlaybook(t)
	var last string
	for attempt := 1; attempt <= 3; attempt++ {
		dir := filepath.Join(t.TempDir(), "lab")
		labDown(t, dir)
		out, err := upshift(t, "lab", "demo", "--dir", dir, "--playbook", noDrain, "--warmup", "1s").CombinedOutput()
		last = string(out)
		require.Error(t, err, "a demo with failures must not succeed:\n%s", out)
		r := readsRE.FindStringSubmatch(last)
		w := writesRE.FindStringSubmatch(last)
		require.NotNil(t, r, last)
		require.NotNil(t, w, last)
		if atoi(t, r[2])+atoi(t, w[3]) > 0 {
			// The load balancer saw the same failures as the checker.
			assert.Equal(t, atoi(t, r[2])+atoi(t, w[3]), assertLBAgrees(t, last))
			t.Logf("attempt %d: %s failed reads, %s failed writes; %s", attempt, r[2], w[3], lbAgreeRE.FindString(last))
			return
		}
	}
	t.Fatalf("killing nodes without drain showed no failed request in 3 attempts:\n%s", last)
}

// TestFailedMigrationHaltsAndResumes breaks the second node's migration:
// the run halts with two nodes serving, the failed node out of rotation and
// not started on X+1, status says where it stands, and after the cause is
// fixed `upshift run` finishes the upgrade, all under traffic with zero
// failed requests.
func TestFailedMigrationHaltsAndResumes(t *testing.T) {
	needHAProxy(t)
	dir := filepath.Join(t.TempDir(), "lab")
	labDown(t, dir)
	ctx := context.Background()
	s, err := lab.Up(ctx, dir, binDir, io.Discard)
	require.NoError(t, err)
	playbook := filepath.Join(dir, "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	good, err := os.ReadFile(s.VarsFile())
	require.NoError(t, err)
	// node-2's migration fails; node-1 (processing) goes first and succeeds.
	node2 := s.Nodes[1]
	broken := strings.Replace(string(good), `"migrate", "--config", "`+node2.ConfigFile+`"`, `"migrate", "--config", "/nonexistent/config.json"`, 1)
	require.NotEqual(t, string(good), broken)
	require.NoError(t, os.WriteFile(s.VarsFile(), []byte(broken), 0o644))
	runOK(t, "init", playbook, "-var-file", s.VarsFile())

	load := traffic.Start(ctx, traffic.Options{URL: s.URL()})
	defer load.Stop()
	time.Sleep(time.Second)
	out, err := upshift(t, "run", playbook, "-var-file", s.VarsFile()).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), `step.migrate["node-2"]: FAILED`)

	status := runOK(t, "status", playbook)
	assert.Regexp(t, `step\.migrate\["node-2"\]\s+failed`, status)
	assert.Regexp(t, `step\.drain\["node-3"\]\s+skipped`, status)
	assert.Regexp(t, `step\.enable\["node-1"\]\s+done`, status)

	// Two nodes keep serving; node-2 is out of rotation and not running X+1.
	checks := lab.FinalChecks(ctx, s, "")
	byWhat := map[string]bool{}
	for _, c := range checks {
		byWhat[c.What] = c.OK
	}
	assert.True(t, byWhat["node-1: healthy, writable, version any"])
	resp, err := http.Get("http://" + s.Nodes[2].Address + "/healthz")
	require.NoError(t, err)
	var h3 struct {
		Version  string `json:"version"`
		ReadOnly bool   `json:"read_only"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h3))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "node-3 keeps serving reads")
	assert.Equal(t, "1", h3.Version, "node-3 was not touched")
	assert.True(t, h3.ReadOnly, "node-3 stays read-only on database A")
	assert.False(t, s.Node(node2).Running(), "the half-migrated node is not started")
	assert.True(t, byWhat["haproxy: node-1 UP and in rotation"])
	assert.True(t, byWhat["haproxy: node-3 UP and in rotation"])
	assert.False(t, byWhat["haproxy: node-2 UP and in rotation"])

	// upshift verify, through the plugins, says what the halted run left.
	vout, err := upshift(t, "verify", playbook, "-var-file", s.VarsFile()).CombinedOutput()
	require.Error(t, err, "%s", vout)
	assert.Equal(t, exitPreflight, second2code(err), "%s", vout)
	vtext := string(vout)
	assert.Contains(t, vtext, `  FAIL  verify.load_balancer (load_balancer.front.verify)`)
	assert.Regexp(t, `server "node-2" is \w+, not in rotation`, vtext)
	assert.Contains(t, vtext, "node node-3: runs version 1, not 2")
	assert.Contains(t, vtext, "node node-3: is still in read-only mode")
	assert.Contains(t, vtext, "different values of db.dsn (values not shown)")
	assert.NotContains(t, vtext, "node node-1: ", "node-1 is upgraded and serving")
	assert.Contains(t, vtext, "2 of 2 checks found problems")

	// The operator fixes the cause; the run resumes and finishes.
	require.NoError(t, os.WriteFile(s.VarsFile(), good, 0o644))
	out2 := runOK(t, "run", playbook, "-var-file", s.VarsFile())
	assert.Contains(t, out2, "resuming an interrupted run")
	time.Sleep(time.Second)
	samples := load.Stop()
	lost, err := traffic.Missing(ctx, s.URL(), samples)
	require.NoError(t, err)
	sum := traffic.Summarize(samples, lost, time.Time{})
	assert.True(t, sum.Clean(), "%s", sum)
	assert.Greater(t, sum.Reads, 50)
	for _, c := range lab.FinalChecks(ctx, s, "2") {
		assert.True(t, c.OK, "%s: %s", c.What, c.Got)
	}
	vtext = runOK(t, "verify", playbook, "-var-file", s.VarsFile())
	assert.Contains(t, vtext, "All 2 checks passed")
}

// noDrainPlaybook is the shipped playbook with its drain step replaced by a
// kill of the node with requests in flight: the negative control. It is
// made from the shipped files at test time, so it tracks them.
func noDrainPlaybook(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "no-drain")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, dir))
	path := filepath.Join(dir, "upgrade.hcl")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	src := string(b)
	start, end := strings.Index(src, `  step "drain" {`), strings.Index(src, `  step "stop" {`)
	require.True(t, start > 0 && end > start, "the shipped playbook has a drain step before its stop step")
	kill := `  step "kill" {
    run = node_pool.cluster.exec
    with {
      node  = each.value.name
      shell = "kill -KILL $(cat '${each.value.pid_file}')"
    }
  }

`
	require.NoError(t, os.WriteFile(path, []byte(src[:start]+kill+src[end:]), 0o644))
	return dir
}
