package main

// Failure drills on the real lab under live traffic (issue 10): each one
// misuses upshift the way an operator might at 3 a.m. and asserts that the
// clusters come out right, with 0 failed reads and 0 lost acknowledged
// writes. `make drills` runs them all verbosely (UPSHIFT_DRILLS=1) and
// prints their figures; make test runs the short ones only (the others'
// logic is covered there by the testkit tests of state_e2e_test.go).

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/traffic"
)

// drillLab is a lab started for a drill, with traffic through its load
// balancer from the start.
type drillLab struct {
	s     *lab.State
	load  *traffic.Load
	start time.Time
}

// longDrill skips a drill that takes two labs or more unless `make drills`
// asked for every drill.
func longDrill(t *testing.T) {
	t.Helper()
	if os.Getenv("UPSHIFT_DRILLS") == "" {
		t.Skip("a long drill: make drills runs it (UPSHIFT_DRILLS=1)")
	}
}

func startDrillLab(t *testing.T, name string) *drillLab {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	labDown(t, dir)
	s, err := lab.Up(context.Background(), dir, binDir, io.Discard)
	require.NoError(t, err)
	d := &drillLab{s: s, start: time.Now()}
	d.load = traffic.Start(context.Background(), traffic.Options{URL: s.URL()})
	t.Cleanup(func() { d.load.Stop() })
	time.Sleep(time.Second) // warm-up: traffic before anything changes
	return d
}

// finish stops the traffic and asserts the verdict: 0 failed reads, 0
// failed writes other than clean read-only refusals, 0 lost acknowledged
// writes. It logs the drill's figures.
func (d *drillLab) finish(t *testing.T, drill string) traffic.Summary {
	t.Helper()
	time.Sleep(time.Second)
	samples := d.load.Stop()
	lost, err := traffic.Missing(context.Background(), d.s.URL(), samples)
	require.NoError(t, err)
	sum := traffic.Summarize(samples, lost, time.Time{})
	t.Logf("DRILL %s: %d requests (%d reads, %d writes acknowledged, %d refused cleanly while read-only), %d failed reads, %d failed writes, %d lost acknowledged writes, %s",
		drill, sum.Requests, sum.Reads, sum.WritesAcked, sum.WritesReadOnly, sum.ReadsFailed, sum.WritesFailed, sum.LostWrites, time.Since(d.start).Round(100*time.Millisecond))
	assert.Equal(t, 0, sum.ReadsFailed, "failed reads: %s", sum)
	assert.Equal(t, 0, sum.WritesFailed, "failed writes: %s", sum)
	assert.Equal(t, 0, sum.LostWrites, "lost acknowledged writes: %s", sum)
	assert.Greater(t, sum.Reads, 50, "the traffic was real")
	return sum
}

type nodeHealth struct {
	Version  string `json:"version"`
	ReadOnly bool   `json:"read_only"`
}

func health(t *testing.T, addr string) nodeHealth {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	var h nodeHealth
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	return h
}

// untouched asserts that no node of the lab was changed: version 1,
// writable.
func (d *drillLab) untouched(t *testing.T) {
	t.Helper()
	for _, n := range d.s.Nodes {
		h := health(t, n.Address)
		assert.Equal(t, "1", h.Version, "%s still on version 1", n.Name)
		assert.False(t, h.ReadOnly, "%s still writable", n.Name)
	}
}

func (d *drillLab) upgraded(t *testing.T) {
	t.Helper()
	for _, c := range lab.FinalChecks(context.Background(), d.s, "2") {
		assert.True(t, c.OK, "%s: %s", c.What, c.Got)
	}
}

// backupRuns lists the per-run folders under the lab's backup folder.
func (d *drillLab) backupRuns(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(d.s.Dir, "backups"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestDrillCrossClusterRun: a run on lab F fails (node-2's migration is
// broken); `upshift run` from the same playbook folder with lab G's
// variables does not adopt F's steps. It is refused, both identities and
// what differs named, G untouched; with --new-run, G is upgraded from
// scratch with its own backup; F's journal is untouched throughout, and F
// then resumes to the end. Both labs are under traffic the whole time.
func TestDrillCrossClusterRun(t *testing.T) {
	needHAProxy(t)
	longDrill(t)
	f := startDrillLab(t, "lab-f")
	g := startDrillLab(t, "lab-g")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	state := filepath.Join(playbook, ".upshift", "state")

	fGood, err := os.ReadFile(f.s.VarsFile())
	require.NoError(t, err)
	node2 := f.s.Nodes[1]
	fBroken := strings.Replace(string(fGood), `"migrate", "--config", "`+node2.ConfigFile+`"`, `"migrate", "--config", "/nonexistent/config.json"`, 1)
	require.NotEqual(t, string(fGood), fBroken)
	require.NoError(t, os.WriteFile(f.s.VarsFile(), []byte(fBroken), 0o644))
	runOK(t, "init", playbook, "-var-file", f.s.VarsFile())

	out, code := runCode(t, "run", playbook, "-var-file", f.s.VarsFile())
	require.Equal(t, exitFailed, code, out)
	assert.Contains(t, out, `step.migrate["node-2"]: FAILED`)
	fDir := clusterDir(t, state)
	fShort := filepath.Base(fDir)
	fJournal, err := os.ReadFile(filepath.Join(fDir, "run.json"))
	require.NoError(t, err)

	// G from the same folder: refused, nothing changed.
	out, code = runCode(t, "run", playbook, "-var-file", g.s.VarsFile())
	assert.Equal(t, exitRefused, code, out)
	assert.Contains(t, out, "cluster "+fShort)
	assert.Regexp(t, `this playbook points at cluster [0-9a-f]{12}`, out)
	assert.Contains(t, out, "load_balancer.front config.", "names what differs")
	assert.Contains(t, out, "Nothing was changed")
	g.untouched(t)
	assert.Empty(t, g.backupRuns(t))

	// G is another cluster: its own run, from scratch.
	out, code = runCode(t, "run", playbook, "-var-file", g.s.VarsFile(), "--new-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Beginning the first run of cluster")
	assert.Contains(t, out, "running 38 steps", "nothing of F's run is taken as done")
	assert.NotContains(t, out, "resuming")
	g.upgraded(t)
	assert.Len(t, g.backupRuns(t), 1, "G has its own backup")
	after, err := os.ReadFile(filepath.Join(fDir, "run.json"))
	require.NoError(t, err)
	assert.Equal(t, string(fJournal), string(after), "F's journal is untouched")

	status := runOK(t, "status", playbook)
	assert.Equal(t, 2, strings.Count("\n"+status, "\nCluster "), status)

	// F's cause fixed: F resumes its own run and finishes.
	require.NoError(t, os.WriteFile(f.s.VarsFile(), fGood, 0o644))
	out = runOK(t, "run", playbook, "-var-file", f.s.VarsFile())
	assert.Contains(t, out, "resuming an interrupted run")
	f.upgraded(t)
	assert.Len(t, f.backupRuns(t), 1)

	f.finish(t, "cross-cluster F")
	g.finish(t, "cross-cluster G")
}

// TestDrillRerunAfterSuccess: once the upgrade is done, `upshift run`
// again, with a changed variable too, says so and changes nothing: no
// step runs, the journal and the backups stay as they are, the cluster
// stays upgraded and serving.
func TestDrillRerunAfterSuccess(t *testing.T) {
	needHAProxy(t)
	d := startDrillLab(t, "lab")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())
	runOK(t, "run", playbook, "-var-file", d.s.VarsFile())
	d.upgraded(t)
	state := filepath.Join(playbook, ".upshift", "state")
	first := currentRun(t, state)
	journalBefore, err := os.ReadFile(filepath.Join(clusterDir(t, state), "run.json"))
	require.NoError(t, err)
	backups := d.backupRuns(t)
	require.Equal(t, []string{first.ID}, backups, "the backup went to the run's own folder")

	for _, extra := range [][]string{nil, {"-var", "target_version=3"}, {"-var", "drain_timeout=5s"}} {
		args := append([]string{"run", playbook, "-var-file", d.s.VarsFile()}, extra...)
		out, code := runCode(t, args...)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "Nothing to do: run "+first.ID+" of cluster ")
		assert.NotContains(t, out, "running ")
		after, err := os.ReadFile(filepath.Join(clusterDir(t, state), "run.json"))
		require.NoError(t, err)
		assert.Equal(t, string(journalBefore), string(after), "the journal is unchanged")
	}
	assert.Equal(t, backups, d.backupRuns(t), "no backup was taken again")
	d.upgraded(t)
	d.finish(t, "rerun after success")
}
