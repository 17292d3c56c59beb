package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
)

// TestRunJSONContract holds a real `run --json` to docs/json.md: the
// first line names the format and its version, every line carries the
// same run id (the one status and the journal know), and progress lines
// the runner recognises carry their fields.
func TestRunJSONContract(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 2, "")
	initPlaybook(t, dir)
	out, err := upshift(t, "run", dir, "--json").Output()
	require.NoError(t, err, "%s", out)

	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "every stdout line is JSON: %s", sc.Text())
		lines = append(lines, m)
	}
	require.NotEmpty(t, lines)
	assert.Equal(t, "format", lines[0]["type"])
	assert.Equal(t, runner.JSONFormat, lines[0]["format"])
	assert.Equal(t, float64(runner.JSONFormatVersion), lines[0]["format_version"])
	id, _ := lines[0]["run_id"].(string)
	require.NotEmpty(t, id, "the format line names the run")
	sleeps := 0
	for _, l := range lines {
		assert.Equal(t, id, l["run_id"], "%v", l)
		if l["type"] == "step_progress" {
			p, ok := l["progress"].(map[string]any)
			require.True(t, ok, "a testkit sleep's progress has fields: %v", l)
			assert.Equal(t, "sleep", p["phase"])
			assert.Equal(t, float64(50e6), p["timeout_ns"])
			sleeps++
		}
	}
	assert.Equal(t, 2, sleeps, "one sleep per item")
	assert.Equal(t, "run_finished", lines[len(lines)-1]["type"])
	assert.Contains(t, runOK(t, "status", dir), id, "the id is the journal's")
}

// outageJournal is a real journal in a temporary folder with one run
// begun, and a function recording a step done between two instants
// (seconds after t0), as the runner records it before its event.
func outageJournal(t *testing.T, t0 time.Time) (*journal.Journal, func(addr, action string, from, to float64)) {
	t.Helper()
	j, err := journal.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	require.NoError(t, j.Begin(&journal.Run{ID: "r1", Digest: "d", StartedAt: t0}))
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	return j, func(addr, action string, from, to float64) {
		require.NoError(t, j.Update(journal.Step{Address: addr, Action: action, Status: journal.Done, StartedAt: at(from), EndedAt: at(to)}))
	}
}

// jsonLines decodes a --json stream.
func jsonLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "every stdout line is JSON: %s", sc.Text())
		lines = append(lines, m)
	}
	return lines
}

// TestOutageSinkSendsTheWindowWhenItCloses: the write_outage line comes
// right after the enable that closes the window, once, with its parts, as
// status computes it from the same journal; run_finished carries it too.
func TestOutageSinkSendsTheWindowWhenItCloses(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	j, done := outageJournal(t, t0)
	var buf bytes.Buffer
	s := &outageSink{next: runner.StampRunID(runner.NewJSONSink(&buf), func() string { return "r1" }), load: j.Load}
	finished := func(addr, action string, to float64) {
		s.Emit(runner.Event{Time: at(to), Type: runner.StepFinished, Address: addr, Action: action})
	}
	// An enable before read-only (none in the shipped playbook) closes nothing.
	done(`step.enable["node-0"]`, "load_balancer.front.enable", 0, 0.2)
	finished(`step.enable["node-0"]`, "load_balancer.front.enable", 0.2)
	done(`step.read_only["node-1"]`, "node_pool.cluster.read_only", 0.5, 1)
	finished(`step.read_only["node-1"]`, "node_pool.cluster.read_only", 1)
	done("step.backup", "database.main.backup", 1, 3)
	done("step.copy", "database.main.copy", 1, 4)
	done(`step.stop["node-1"]`, "node_pool.cluster.stop", 5, 5.5)
	done(`step.enable["node-1"]`, "load_balancer.front.enable", 8, 9)
	finished(`step.enable["node-1"]`, "load_balancer.front.enable", 9)
	done(`step.enable["node-2"]`, "load_balancer.front.enable", 10, 11)
	finished(`step.enable["node-2"]`, "load_balancer.front.enable", 11)
	s.Emit(runner.Event{Time: at(12), Type: runner.RunFinished, Status: "done"})

	lines := jsonLines(t, buf.Bytes())
	var types []string
	for _, l := range lines {
		types = append(types, l["type"].(string))
	}
	assert.Equal(t, []string{"format", "step_finished", "step_finished", "step_finished", "write_outage", "step_finished", "run_finished"}, types)
	want := `{"from":"2026-12-05T09:00:01Z","to":"2026-12-05T09:00:09Z","item":"node-1","state":"closed","duration_ns":8000000000,"parts":[
		{"name":"backup","from":"2026-12-05T09:00:01Z","to":"2026-12-05T09:00:03Z","duration_ns":2000000000},
		{"name":"copy","from":"2026-12-05T09:00:01Z","to":"2026-12-05T09:00:04Z","duration_ns":3000000000},
		{"name":"first item's stop to enable (node-1)","from":"2026-12-05T09:00:05Z","to":"2026-12-05T09:00:09Z","duration_ns":4000000000}]}`
	for _, i := range []int{4, 6} {
		b, err := json.Marshal(lines[i]["write_outage"])
		require.NoError(t, err)
		assert.JSONEq(t, want, string(b), "line %d", i)
	}
	assert.Equal(t, "r1", lines[4]["run_id"])
	assert.Contains(t, lines[4]["message"], "writes refused for 8s (backup 2s, copy 3s, first item's stop to enable (node-1) 4s)")
	assert.Equal(t, "writes refused for 8s (backup 2s, copy 3s, first item's stop to enable (node-1) 4s)", s.window().Line(clockTime), "the line run prints at its end")
	run, err := j.Load()
	require.NoError(t, err)
	b, err := json.Marshal(run.WriteOutage())
	require.NoError(t, err)
	assert.JSONEq(t, want, string(b), "status computes the same window from the journal")
}

// TestOutageSinkReturnedRun: a run that returned the cluster to its start
// undid read-only; its journal then keeps only the undo's record, so the
// window's start comes from the run's own event.
func TestOutageSinkReturnedRun(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	j, done := outageJournal(t, t0)
	var buf bytes.Buffer
	s := &outageSink{next: runner.NewJSONSink(&buf), load: j.Load}
	done(`step.read_only["n1"]`, "node_pool.cluster.read_only", 0.5, 1)
	s.Emit(runner.Event{Time: at(1), Type: runner.StepFinished, Address: `step.read_only["n1"]`, Action: "node_pool.cluster.read_only"})
	require.NoError(t, j.Update(journal.Step{Address: `step.read_only["n1"]`, Action: "node_pool.cluster.read_only", Status: journal.RolledBack,
		Note: "undone by node_pool.kit.read_write", StartedAt: at(4), EndedAt: at(4.5)}))
	s.Emit(runner.Event{Time: at(5), Type: runner.RunFinished, Status: "failed"})
	lines := jsonLines(t, buf.Bytes())
	b, err := json.Marshal(lines[len(lines)-1]["write_outage"])
	require.NoError(t, err)
	assert.JSONEq(t, `{"from":"2026-12-05T09:00:01Z","reopened":"2026-12-05T09:00:04.5Z","state":"returned","duration_ns":3500000000}`, string(b))
}
