package report_test

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/report"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/runner/journal"
)

// fakeRun is a journal of a rolling upgrade of n nodes, one at a time:
// read_only, then per node drain, stop, start, wait_healthy, enable; node
// 2 of 3 failed its start when fail is set; a gate after node 1.
func fakeRun(n int, fail bool) *journal.Run {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	r := &journal.Run{ID: "20261205T090000Z-0123456789ab", Playbook: "playbooks/rolling-upgrade", Cluster: "3f2a9c1d0b7e",
		Digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", StartedAt: t0, Status: journal.Done,
		Steps: map[string]*journal.Step{},
		Audit: &journal.Audit{User: "ops", Host: "bastion-1", Version: "0.9.0", Command: "upshift run playbooks/rolling-upgrade -var-file cluster.vars.hcl"}}
	at := t0
	add := func(addr, action string, d time.Duration, st journal.Status) {
		s := &journal.Step{Address: addr, Action: action, Status: st, StartedAt: at, EndedAt: at.Add(d), Attempts: 1}
		if st == journal.Failed {
			s.Error = "start: exit status 1 <stderr: port in use>"
		}
		r.Steps[addr] = s
		at = at.Add(d)
	}
	add("step.read_only", "node_pool.cluster.read_only", 300*time.Millisecond, journal.Done)
	add("step.copy", "database.main.copy", 2*time.Second, journal.Done)
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("node-%d", i)
		add(`step.drain["`+k+`"]`, "load_balancer.front.drain", 1500*time.Millisecond, journal.Done)
		add(`step.stop["`+k+`"]`, "node_pool.cluster.stop", 200*time.Millisecond, journal.Done)
		if fail && i == 2 {
			add(`step.start["`+k+`"]`, "node_pool.cluster.start", 400*time.Millisecond, journal.Failed)
			r.Status = journal.Failed
			for j := i; j <= n; j++ {
				for _, st := range []string{"drain", "stop", "start", "wait", "enable"} {
					a := fmt.Sprintf(`step.%s["node-%d"]`, st, j)
					if r.Steps[a] == nil {
						r.Steps[a] = &journal.Step{Address: a, Status: journal.Pending}
					}
				}
			}
			break
		}
		add(`step.start["`+k+`"]`, "node_pool.cluster.start", 300*time.Millisecond, journal.Done)
		add(`step.wait["`+k+`"]`, "node_pool.cluster.wait_healthy", 1200*time.Millisecond, journal.Done)
		add(`step.enable["`+k+`"]`, "load_balancer.front.enable", 800*time.Millisecond, journal.Done)
		if i == 1 {
			add(`gate.upgrade["after-batch-1"]`, "", 3*time.Second, journal.Done)
			r.Steps[`gate.upgrade["after-batch-1"]`].Note = "approved by ops"
		}
	}
	r.UpdatedAt = at
	// The guard's samples, one a second, with a few errors at 4 s.
	var req, errs int64
	for s := t0; !s.After(at); s = s.Add(time.Second) {
		req += 40
		if s.Sub(t0) == 4*time.Second {
			errs += 2
		}
		r.Samples = append(r.Samples, journal.Sample{Rollout: "upgrade", At: s, Backend: &journal.Counters{Requests: req, HTTP5xx: errs}})
	}
	return r
}

var updateRun = update

func TestRunReportGolden(t *testing.T) {
	r := fakeRun(3, true)
	var lab []traffic.Sample
	for i := 0; i < 60; i++ {
		s := traffic.Sample{At: r.StartedAt.Add(time.Duration(i) * 150 * time.Millisecond), Kind: traffic.Read, Status: 200}
		if i == 20 {
			s.Status, s.Err = 0, "EOF"
		}
		lab = append(lab, s)
	}
	var buf bytes.Buffer
	m, err := report.WriteRun(&buf, report.RunData{Run: r, Traffic: lab})
	require.NoError(t, err)
	html := buf.String()
	golden := "testdata/run.golden.html"
	if *updateRun {
		require.NoError(t, os.WriteFile(golden, buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "go test ./internal/report -run TestRunReportGolden -update")
	assert.Equal(t, string(want), html)

	// What the page must say, whatever its layout.
	assert.Contains(t, html, "ops on bastion-1, upshift 0.9.0")
	assert.Contains(t, html, "digest 9f86d081884c7d65")
	assert.Contains(t, html, "FAILED at start")
	assert.Contains(t, html, "start: exit status 1 &lt;stderr: port in use&gt;", "plugin text is escaped")
	assert.Contains(t, html, `gate.upgrade[&#34;after-batch-1&#34;]`)
	assert.Contains(t, html, "approved by ops")
	assert.Contains(t, html, "writes refused")
	assert.Contains(t, html, "<tr><th>Write outage</th><td>writes refused for 6s (copy 2s, first item&#39;s drain (node-1) 1.5s, first item&#39;s stop to enable (node-1) 2.5s)</td></tr>", "the window with its parts")
	assert.Contains(t, html, "lab traffic")
	assert.Contains(t, html, "1 failed")
	assert.NotRegexp(t, `<script|https?://`, html, "self-contained")
	assert.Equal(t, 4, m.Rows, "cluster + 3 nodes")
	assert.False(t, m.LabelsOverlap)
}

// At 50 nodes the rows shrink but stay readable: 18 px rows, no font under
// 11 px, and labels only where they fit, never overlapping.
func TestRunReportFiftyNodes(t *testing.T) {
	var buf bytes.Buffer
	m, err := report.WriteRun(&buf, report.RunData{Run: fakeRun(50, false)})
	require.NoError(t, err)
	assert.Equal(t, 51, m.Rows)
	assert.Equal(t, 18, m.RowHeight)
	assert.GreaterOrEqual(t, m.MinFontPx, 11.0)
	assert.False(t, m.LabelsOverlap)
	assert.Greater(t, m.Labels, 0, "some steps are wide enough for their label")
	// Every font size in the page is at least the reported minimum.
	for _, f := range regexp.MustCompile(`font-size:(\d+(?:\.\d+)?)px`).FindAllStringSubmatch(buf.String(), -1) {
		assert.NotEqual(t, "", f[1])
		assert.False(t, strings.HasPrefix(f[1], "9") || strings.HasPrefix(f[1], "8") || f[1] == "10", "font %spx", f[1])
	}
	for i := 1; i <= 50; i++ {
		assert.Contains(t, buf.String(), fmt.Sprintf(">node-%d</text>", i))
	}
}

// Nodes of one batch start together: their rows go in natural order.
func TestRunReportRowOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	r := &journal.Run{ID: "r", StartedAt: t0, UpdatedAt: t0.Add(3 * time.Second), Steps: map[string]*journal.Step{}}
	for i, k := range []string{"node-10", "node-2", "node-1", "node-11"} {
		start := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		if k == "node-11" {
			start = t0.Add(2 * time.Second) // the next batch
		}
		a := `step.drain["` + k + `"]`
		r.Steps[a] = &journal.Step{Address: a, Status: journal.Done, StartedAt: start, EndedAt: start.Add(time.Second)}
	}
	var buf bytes.Buffer
	_, err := report.WriteRun(&buf, report.RunData{Run: r})
	require.NoError(t, err)
	names := regexp.MustCompile(`class="name"[^>]*><title>([^<]*)</title>`).FindAllStringSubmatch(buf.String(), -1)
	var got []string
	for _, n := range names {
		got = append(got, n[1])
	}
	assert.Equal(t, []string{"node-1", "node-2", "node-10", "node-11"}, got)
}

// A run returned to its start undid read-only before any node on the new
// version took writes: the report says so instead of drawing nothing.
func TestRunReportReturnedRun(t *testing.T) {
	r := fakeRun(3, true)
	ro := r.Steps["step.read_only"]
	ro.Status, ro.Note = journal.RolledBack, "undone by node_pool.cluster.read_write"
	ro.StartedAt, ro.EndedAt = r.StartedAt.Add(10*time.Second), r.StartedAt.Add(10500*time.Millisecond)
	for _, s := range r.Steps {
		if s.Status == journal.Done && s.Address != "step.read_only" {
			s.Status, s.Note = journal.RolledBack, "returned to the start"
		}
	}
	var buf bytes.Buffer
	_, err := report.WriteRun(&buf, report.RunData{Run: r})
	require.NoError(t, err)
	assert.Contains(t, buf.String(), "<tr><th>Write outage</th><td>writes refused until 09:00:10.500 UTC, then taken again by the old version: the run returned the cluster to where it began before any node on the new version took writes")
	assert.NotContains(t, buf.String(), `class="outage"`, "no band: when read-only began is not in the journal")
}
