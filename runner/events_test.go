package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner/journal"
)

var updateEvents = flag.Bool("update-events", false, "rewrite testdata/events.golden.jsonl")

func TestJSONSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONSink(&buf)
	s.Emit(Event{Type: StepFailed, RunID: "r1", Address: "step.x", Error: "boom", Duration: time.Second})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var head, got map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &head))
	assert.Equal(t, "format", head["type"])
	assert.Equal(t, JSONFormat, head["format"])
	assert.Equal(t, float64(JSONFormatVersion), head["format_version"])
	assert.Equal(t, "r1", head["run_id"])
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &got))
	assert.Equal(t, "step_failed", got["type"])
	assert.Equal(t, "boom", got["error"])
	assert.Equal(t, float64(time.Second), got["duration_ns"])
}

// The lines the plugin kits write, made with their own format strings, and
// the fields read from them.
func TestParseProgress(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	num := func(n int) *int { return &n }
	f := false
	tr := true
	for _, c := range []struct {
		line string
		want *Progress
	}{
		{fmt.Sprintf("%s: waiting for %d in-flight session(s) (%s of %s)", "node-2", 3, 1200*time.Millisecond, time.Minute),
			&Progress{Phase: "drain", Server: "node-2", Sessions: i64(3), Waited: 1200 * time.Millisecond, Timeout: time.Minute}},
		{fmt.Sprintf("%s: waiting for %d in-flight session(s), last new session %s ago (%s of %s)", "node-1", 0, 1100*time.Millisecond, 1100*time.Millisecond, 3*time.Second),
			&Progress{Phase: "drain", Server: "node-1", Sessions: i64(0), Detail: "last new session 1.1s ago", Waited: 1100 * time.Millisecond, Timeout: 3 * time.Second}},
		{fmt.Sprintf("%s: drain set (was %s, %d sessions)", "node-2", "UP, check L7OK", 5),
			&Progress{Phase: "drain", Server: "node-2", Sessions: i64(5)}},
		{fmt.Sprintf("%s is already draining (%d sessions)", "node-2", 0), &Progress{Phase: "drain", Server: "node-2", Sessions: i64(0)}},
		{fmt.Sprintf("%s: no sessions left after %s; now in maintenance", "node-2", 40*time.Millisecond),
			&Progress{Phase: "drain", Server: "node-2", Sessions: i64(0), Waited: 40 * time.Millisecond}},
		{fmt.Sprintf("%s: waiting for %d nginx worker(s) of the previous configuration to finish their in-flight requests", "node-1", 2),
			&Progress{Phase: "drain", Server: "node-1", Workers: num(2)}},
		{fmt.Sprintf("%s: %s (%s of %s)", "node-3", "DOWN 1/2, check L7OK", 700*time.Millisecond, 2*time.Minute),
			&Progress{Phase: "enable", Server: "node-3", HealthyChecks: num(1), HealthyNeeded: num(2), Waited: 700 * time.Millisecond, Timeout: 2 * time.Minute, Detail: "DOWN 1/2, check L7OK"}},
		{fmt.Sprintf("%s: %s (%s of %s)", "node-3", "MAINT", time.Second, 2*time.Minute),
			&Progress{Phase: "enable", Server: "node-3", Waited: time.Second, Timeout: 2 * time.Minute, Detail: "MAINT"}},
		{fmt.Sprintf("%s: UP after %s", "node-3", 1500*time.Millisecond), &Progress{Phase: "enable", Server: "node-3", Healthy: &tr, Waited: 1500 * time.Millisecond}},
		{fmt.Sprintf("waiting for %s to answer %s: %s", "node-1", "http://127.0.0.1:1/healthz", "HTTP 503"),
			&Progress{Phase: "enable", Server: "node-1", Healthy: &f, Detail: "HTTP 503"}},
		{fmt.Sprintf("waiting: %s", "HTTP 503: starting"), &Progress{Phase: "wait_healthy", Healthy: &f, Detail: "HTTP 503: starting"}},
		{fmt.Sprintf("started pid %d, waiting for it to answer on %s", 4242, "127.0.0.1:8081"), &Progress{Phase: "start", Pid: 4242, Detail: "waiting for it to answer on 127.0.0.1:8081"}},
		{fmt.Sprintf("sent SIGTERM to pid %d", 4242), &Progress{Phase: "stop", Pid: 4242}},
		{fmt.Sprintf("sleeping %s", 6*time.Second), &Progress{Phase: "sleep", Timeout: 6 * time.Second}},
		{"copy: 412 MiB of 1.0 GiB (40%), 82 MiB/s, about 7s left",
			&Progress{Phase: "copy", Bytes: i64(412 << 20), BytesTotal: i64(1 << 30), Percent: num(40), Left: 7 * time.Second}},
		{"rows: 2.5M rows of 10.0M rows (25%), 1.2M rows/s, about 6s left",
			&Progress{Phase: "rows", Rows: i64(2_500_000), RowsTotal: i64(10_000_000), Percent: num(25), Left: 6 * time.Second}},
		{"dump: 1.5 KiB, 768 B/s", &Progress{Phase: "dump", Bytes: i64(1536)}},
		{"copying main.db to main_b.db with VACUUM INTO", nil},
	} {
		assert.Equal(t, c.want, ParseProgress(c.line), c.line)
	}
}

func TestStampRunID(t *testing.T) {
	var got []Event
	id := ""
	s := StampRunID(sinkFunc(func(e Event) { got = append(got, e) }), func() string { return id })
	s.Emit(Event{Type: RunStarted})
	id = "20261205-1"
	s.Emit(Event{Type: StepProgress, Message: "sleeping 2s"})
	s.Emit(Event{Type: RunFinished, RunID: "given"})
	require.Len(t, got, 3)
	assert.Equal(t, "", got[0].RunID, "no id before the run has one")
	assert.Equal(t, "20261205-1", got[1].RunID)
	assert.Equal(t, &Progress{Phase: "sleep", Timeout: 2 * time.Second}, got[1].Progress)
	assert.Equal(t, "given", got[2].RunID, "an id the event carries is kept")
}

type sinkFunc func(Event)

func (f sinkFunc) Emit(e Event) { f(e) }

// TestJSONStreamShape pins the stream's shape: for each line, its type and
// the names and JSON kinds of its fields. A change here is a change of the
// contract in docs/json.md: additions are fine; anything else bumps
// JSONFormatVersion.
func TestJSONStreamShape(t *testing.T) {
	var buf bytes.Buffer
	s := StampRunID(NewJSONSink(&buf), func() string { return "20261205T084500-abcd" })
	t0 := time.Date(2026, 12, 5, 8, 45, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	drain := `step.drain["node-1"]`
	outage := &journal.Outage{From: at(1), To: at(90), Item: "node-1", Parts: []journal.OutagePart{
		{Name: "backup", From: at(1), To: at(30)}, {Name: "copy", From: at(2), To: at(40)}, {Name: `first item's stop to enable (node-1)`, From: at(60), To: at(90)},
	}}
	for _, e := range []Event{
		{Time: at(0), Type: RunStarted, Message: "running 9 steps"},
		{Time: at(10), Type: StepStarted, Address: drain, Action: "load_balancer.front.drain", Key: "node-1"},
		{Time: at(20), Type: StepProgress, Address: drain, Action: "load_balancer.front.drain", Key: "node-1", Attempt: 1, Message: "node-1: waiting for 2 in-flight session(s) (1s of 1m0s)"},
		{Time: at(30), Type: StepProgress, Address: drain, Action: "load_balancer.front.drain", Key: "node-1", Attempt: 1, Message: "waiting: HTTP 503: starting"},
		{Time: at(35), Type: StepProgress, Address: drain, Action: "load_balancer.front.drain", Key: "node-1", Attempt: 1, Message: "node-3: DOWN 1/2, check L7OK (1s of 2m0s)"},
		{Time: at(36), Type: StepProgress, Address: "step.copy", Action: "database.main.copy", Attempt: 1, Message: "copy: 412 MiB of 1.0 GiB (40%), 82 MiB/s, about 7s left"},
		{Time: at(37), Type: StepProgress, Address: "step.copy", Action: "database.main.copy", Attempt: 1, Message: "rows: 2.5M rows of 10.0M rows (25%), 1.2M rows/s, about 6s left"},
		{Time: at(40), Type: StepRetrying, Address: drain, Key: "node-1", Attempt: 1, Error: "refused", Message: "next attempt in 1s"},
		{Time: at(50), Type: StepFinished, Address: drain, Key: "node-1", Duration: 40 * time.Millisecond},
		{Time: at(60), Type: StepFailed, Address: `step.stop["node-1"]`, Key: "node-1", Error: "exit 1", Duration: time.Millisecond},
		{Time: at(70), Type: StepSkipped, Address: `step.start["node-1"]`, Key: "node-1", Message: "an earlier step failed"},
		{Time: at(80), Type: StepRestored, Address: "step.copy"},
		{Time: at(90), Type: RollbackStart, Message: "returning to the start"},
		{Time: at(95), Type: WriteOutageClosed, WriteOutage: outage},
		{Time: at(100), Type: RunFinished, Status: "failed", Message: "1 failed", Duration: 100 * time.Millisecond},
		{Time: at(110), Type: RunFinished, Status: "done", Message: "9 steps done", Duration: 110 * time.Millisecond, WriteOutage: outage},
	} {
		s.Emit(e)
	}
	got := shapeOf(t, buf.Bytes())
	golden := filepath.Join("testdata", "events.golden.jsonl")
	if *updateEvents {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "go test ./runner -run TestJSONStreamShape -update-events writes it")
	assert.Equal(t, string(want), got)
}

// shapeOf renders each line as its type and its fields' names and kinds,
// nested objects flattened (progress.sessions: number).
func shapeOf(t *testing.T, stream []byte) string {
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(stream))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		require.Contains(t, m, "run_id", "every line carries the run id")
		var fields []string
		var walk func(prefix string, m map[string]any)
		walk = func(prefix string, m map[string]any) {
			for k, v := range m {
				switch v := v.(type) {
				case map[string]any:
					walk(prefix+k+".", v)
				case float64:
					fields = append(fields, prefix+k+": number")
				case bool:
					fields = append(fields, prefix+k+": bool")
				case []any:
					// An array of objects: its first element's fields.
					if len(v) > 0 {
						if o, ok := v[0].(map[string]any); ok {
							walk(prefix+k+"[].", o)
							continue
						}
					}
					fields = append(fields, prefix+k+": array")
				default:
					fields = append(fields, prefix+k+": string")
				}
			}
		}
		walk("", m)
		sort.Strings(fields)
		fmt.Fprintf(&out, "%s\t%s\n", m["type"], strings.Join(fields, ", "))
	}
	return out.String()
}
