package report_test

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/report"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/runner/journal"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func fixture(t *testing.T) report.Data {
	f, err := os.Open("testdata/events.jsonl")
	require.NoError(t, err)
	defer f.Close()
	events := report.ParseEvents(f)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var samples []traffic.Sample
	// 5 seconds of traffic: 20 requests a second, with read-only refusals
	// in seconds 2-3 and two failures in second 4.
	for sec := 0; sec < 5; sec++ {
		for i := 0; i < 20; i++ {
			s := traffic.Sample{At: t0.Add(time.Duration(sec)*time.Second + time.Duration(i)*50*time.Millisecond),
				Kind: traffic.SlowRead, Status: 200, Latency: 300 * time.Millisecond, Node: "node-2", Version: "1"}
			switch {
			case i%4 == 3 && (sec == 2 || sec == 3):
				s.Kind, s.Status, s.ReadOnly, s.ID = traffic.Write, 503, true, "w"
			case i%4 == 3:
				s.Kind, s.Status, s.ID, s.Latency = traffic.Write, 201, "w", 4*time.Millisecond
			case i%4 == 2:
				s.Kind, s.ID, s.Latency = traffic.Read, "seed", time.Duration(sec+1)*time.Millisecond
			case sec == 4 && i < 2:
				s.Status, s.Err = 0, "EOF"
			}
			samples = append(samples, s)
		}
	}
	return report.Data{
		Title: "upgrade <demo> & test", Start: t0, End: t0.Add(5 * time.Second),
		UpgradeStart: t0.Add(2 * time.Second), UpgradeEnd: t0.Add(5 * time.Second),
		Events: events, Samples: samples,
		Summary: traffic.Summarize(samples, nil, t0.Add(2*time.Second)),
		Nodes: []report.Node{
			{Name: "node-1", Version: "2", InLB: false, Healthy: false},
			{Name: "node-2", Version: "1", InLB: true, Healthy: true},
		},
		Checks: []report.Check{
			{What: "node-1: version 2", OK: false, Got: "not answering"},
			{What: "node-2: healthy", OK: true, Got: "ok"},
		},
	}
}

func TestParseEvents(t *testing.T) {
	events := fixture(t).Events
	require.Len(t, events, 15, "the line that is not JSON is skipped")
	assert.Equal(t, "step_failed", events[12].Type)
	assert.Equal(t, "node-1", events[12].Key)
	assert.Equal(t, int64(500000000), events[12].Duration)
	assert.Equal(t, "exit status 5: <database> is newer", events[12].Error)
}

func TestReportGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, report.Write(&b, fixture(t)))
	html := b.String()

	// Self-contained: no script, nothing fetched.
	for _, bad := range []string{"<script", "http://", "https://", "src=", "@import"} {
		assert.NotContains(t, html, bad)
	}
	assert.Contains(t, html, "<title>upgrade &lt;demo&gt; &amp; test</title>", "escaped")
	// One row for the cluster, then one per node, in order.
	iCluster := strings.Index(html, `class="name" x="-85" y="5" dy="14">cluster<`)
	i1 := strings.Index(html, `class="name" x="-85" y="35" dy="14">node-1<`)
	i2 := strings.Index(html, `class="name" x="-85" y="65" dy="14">node-2<`)
	assert.True(t, iCluster >= 0 && i1 > iCluster && i2 > i1, "rows: cluster, node-1, node-2")
	// migrate failed after a retry: its bar starts at the last start.
	assert.Contains(t, html, `<title>step.migrate[&#34;node-1&#34;]: 500ms: exit status 5: &lt;database&gt; is newer</title><rect class="fail" x="900" y="35" width="100"`)
	assert.Contains(t, html, `<title>step.drain[&#34;node-2&#34;]: skipped</title><rect class="skip"`)
	assert.Contains(t, html, `<title>second 4: 18 ok, 0 read-only refusals, 2 failed</title>`)
	assert.Contains(t, html, `<title>second 2: 15 ok, 5 read-only refusals, 0 failed</title>`)
	assert.Contains(t, html, `<strong class="bad">FAILED</strong>`)
	assert.Contains(t, html, `<rect class="reqfail" x="800" y="0" width="199" height="10"></rect>`, "2 of 20 in red, from the top")
	assert.Contains(t, html, "p50 2ms / p99 4ms before; p50 4ms / p99 5ms during")
	assert.Contains(t, html, `<td>node-1</td><td>2</td><td class="bad">no</td><td class="bad">no</td>`)

	const golden = "testdata/report.golden.html"
	if *update {
		require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), html, "the report changed: look at it, then go test -update")
}

func TestReportOfACleanRun(t *testing.T) {
	d := fixture(t)
	d.Samples = d.Samples[:40]
	d.Summary = traffic.Summarize(d.Samples, nil, time.Time{})
	d.Checks = d.Checks[1:]
	var b bytes.Buffer
	require.NoError(t, report.Write(&b, d))
	assert.Contains(t, b.String(), "zero failed requests, zero lost writes")
	assert.NotContains(t, b.String(), `<rect class="reqfail"`, "no failure bar")
	assert.NotContains(t, b.String(), `<rect class="ro"`, "no refusal bar")
	assert.NotContains(t, b.String(), "Write outage", "none reported: nothing said")

	// The window the run reported, with its parts.
	t0 := d.Start
	d.WriteOutage = &journal.Outage{From: t0.Add(2 * time.Second), To: t0.Add(4500 * time.Millisecond), Item: "node-1",
		Parts: []journal.OutagePart{{Name: "copy", From: t0.Add(2 * time.Second), To: t0.Add(3 * time.Second)}}}
	b.Reset()
	require.NoError(t, report.Write(&b, d))
	assert.Contains(t, b.String(), "<p>Write outage: writes refused for 2.5s (copy 1s).</p>")

	// Nothing at all still renders.
	b.Reset()
	require.NoError(t, report.Write(&b, report.Data{Title: "empty"}))
	assert.Contains(t, b.String(), "</html>")
}
