package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
)

// TestRunJSONContract holds a real `run --json` to docs/json.md: the
// first line names the format and its version, every line carries the
// same run id (the one status and the journal know), and progress lines
// the runner recognises carry their fields.
func TestRunJSONContract(t *testing.T) {
	needBinaries(t)
	// Read-only first, and no load balancer to enable a node: the window
	// opens and stays open.
	dir, _ := kitPlaybook(t, 2, `
step "read_only" {
  run = node_pool.kit.read_only
  with {
    node    = "n1"
    enabled = true
  }
}
`)
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
	last := lines[len(lines)-1]
	assert.Equal(t, "run_finished", last["type"])
	// The window, on run_finished: open since read_only finished.
	var readOnlyEnd string
	for _, l := range lines {
		if l["type"] == "step_finished" && l["address"] == "step.read_only" {
			readOnlyEnd, _ = l["time"].(string)
		}
		assert.NotEqual(t, "write_outage", l["type"], "no node took writes again: the window did not close")
	}
	wo, ok := last["write_outage"].(map[string]any)
	require.True(t, ok, "run_finished carries the window: %v", last)
	assert.Equal(t, "open", wo["state"])
	from, err := time.Parse(time.RFC3339Nano, wo["from"].(string))
	require.NoError(t, err)
	ended, err := time.Parse(time.RFC3339Nano, readOnlyEnd)
	require.NoError(t, err)
	assert.False(t, from.After(ended), "it opened when read_only finished (recorded before its event)")
	assert.NotContains(t, wo, "duration_ns", "an open window has no length yet")
	status := runOK(t, "status", dir)
	assert.Contains(t, status, id, "the id is the journal's")
	assert.Regexp(t, `write outage: writes refused since .*, not reopened yet \(`, status)
}

// kitReturnPlaybook is a playbook that puts n1 read-only, then fails
// before its point of no return: the run returns the cluster to its start.
const kitReturnPlaybook = `
node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = %q
  }
  nodes = [{ name = "n1" }]
}

step "read_only" {
  run = node_pool.kit.read_only
  with {
    node    = "n1"
    enabled = true
  }
}

step "copy" {
  run = node_pool.kit.sleep
  with {
    duration = "20ms"
  }
  depends_on = [step.read_only]
}

step "boom" {
  run = node_pool.kit.fail
  with {
    message = "the copy does not verify"
  }
  depends_on = [step.copy]
}

step "start" {
  run                = node_pool.kit.noop
  point_of_no_return = true
  depends_on         = [step.boom]
}
`

// TestRunJSONWriteOutageReturned: a run that fails before its point of no
// return undoes read-only; run --json, its text output and status say
// that writes were refused, then taken again by the old version, rather
// than nothing.
func TestRunJSONWriteOutageReturned(t *testing.T) {
	needBinaries(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(fmt.Sprintf(kitReturnPlaybook, filepath.Join(dir, "kitstate"))), 0o644))
	initPlaybook(t, dir)
	out, err := upshift(t, "run", dir, "--json").Output()
	require.Error(t, err, "the run fails")
	lines := jsonLines(t, out)
	last := lines[len(lines)-1]
	require.Equal(t, "run_finished", last["type"])
	wo, ok := last["write_outage"].(map[string]any)
	require.True(t, ok, "run_finished carries the window: %v", last)
	assert.Equal(t, "returned", wo["state"])
	assert.NotEmpty(t, wo["from"], "the run's own stream knows when read-only began")
	assert.NotEmpty(t, wo["reopened"])
	assert.Greater(t, wo["duration_ns"], float64(20e6), "at least the copy's sleep")
	o := lab.RunOutage(out)
	require.NotNil(t, o, "the lab demo reads the same window from the stream")
	assert.Equal(t, journal.OutageReturned, o.State())

	status := runOK(t, "status", dir)
	assert.Regexp(t, `write outage: writes refused until .*, then taken again by the old version: the run returned the cluster to where it began before any node on the new version took writes`, status)

	// The console says it at its end, from the stream's knowledge.
	text, code := runCode(t, "run", dir)
	assert.Equal(t, exitFailed, code, text)
	assert.Regexp(t, `Write outage: writes refused for \S+ from .*, then taken again by the old version at .*: the run returned the cluster to where it began before any node on the new version took writes\.`, text)
}

// TestPlanEstimatesTheWriteOutage: with finished runs of this cluster in
// its state (real journal files), plan ends with the median window and
// its parts, in text and JSON; runs of another cluster in the same state
// folder do not count, and without state plan says nothing and makes no
// folder.
func TestPlanEstimatesTheWriteOutage(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 2, "")
	initPlaybook(t, dir)
	empty := filepath.Join(t.TempDir(), "none")
	plain := runOK(t, "plan", dir, "--state-dir", empty)
	assert.NotContains(t, plain, "Write outage")
	_, err := os.Stat(empty)
	assert.True(t, os.IsNotExist(err), "plan makes no state folder")

	runOK(t, "run", dir) // a run of this cluster: no window (no read_only)
	clusters, err := filepath.Glob(filepath.Join(dir, ".upshift", "state", "clusters", "*"))
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	assert.NotContains(t, runOK(t, "plan", dir), "Write outage", "no run had a window")

	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	past := func(cdir, id string, start time.Time, total float64) {
		j, err := journal.Open(cdir)
		require.NoError(t, err)
		defer j.Close()
		require.NoError(t, j.Begin(&journal.Run{ID: id, Digest: "d", StartedAt: start}))
		at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
		for _, s := range []journal.Step{
			{Address: "step.read_only", Action: "node_pool.kit.read_only", StartedAt: at(0), EndedAt: at(1)},
			{Address: "step.backup", Action: "database.main.backup", StartedAt: at(1), EndedAt: at(3)},
			{Address: "step.copy", Action: "database.main.copy", StartedAt: at(1), EndedAt: at(4)},
			{Address: `step.stop["n1"]`, Action: "node_pool.kit.stop", StartedAt: at(total - 1), EndedAt: at(total)},
			{Address: `step.enable["n1"]`, Action: "load_balancer.front.enable", StartedAt: at(total), EndedAt: at(total + 1)},
		} {
			s.Status = journal.Done
			require.NoError(t, j.Update(s))
		}
		require.NoError(t, j.Finish(journal.Done))
	}
	past(clusters[0], "p1", t0, 9)
	past(clusters[0], "p2", t0.Add(time.Hour), 11)
	past(clusters[0], "p3", t0.Add(2*time.Hour), 13)
	// Another cluster of the same state folder, much slower: not this one's.
	store, err := journal.OpenStore(filepath.Join(dir, ".upshift", "state"))
	require.NoError(t, err)
	other, err := store.Register(&journal.Cluster{ID: "ffffffffffff0000"})
	require.NoError(t, err)
	past(other, "o1", t0, 600)

	text := runOK(t, "plan", dir)
	assert.Contains(t, text, "\nWrite outage: about 11s (backup 2s, copy 3s in parallel, first item's stop to enable 2s), from the last 3 runs of this cluster.\n")

	out, err := upshift(t, "plan", dir, "--json").Output()
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(out, &doc), "%s", out)
	assert.True(t, strings.HasPrefix(string(out), "{\n  \"format_version\": 1,"), "format_version stays first")
	assert.NotEmpty(t, doc["steps"])
	est, ok := doc["write_outage_estimate"].(map[string]any)
	require.True(t, ok, "%s", out)
	assert.Equal(t, float64(11e9), est["duration_ns"], "the median of 9, 11 and 13 s")
	assert.Equal(t, []any{"p3", "p2", "p1"}, est["runs"])
	parts, _ := est["parts"].([]any)
	require.Len(t, parts, 3)
	assert.Equal(t, map[string]any{"name": "copy", "duration_ns": float64(3e9), "parallel": true}, parts[1])
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

// TestConsoleSaysWhenTheWindowCloses: the console view prints the
// write_outage event as a line of its own.
func TestConsoleSaysWhenTheWindowCloses(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	c := NewConsoleSink(&buf)
	c.Emit(runner.Event{Time: t0, Type: runner.RunStarted, Message: "running 3 steps"})
	c.Emit(runner.Event{Time: t0.Add(9 * time.Second), Type: runner.WriteOutageClosed, Message: "writes refused for 8s (backup 2s, copy 3s, first item's stop to enable (node-1) 4s)"})
	c.Close()
	assert.Contains(t, buf.String(), "[   9.0s] write outage over: writes refused for 8s (backup 2s, copy 3s, first item's stop to enable (node-1) 4s)\n")
}
