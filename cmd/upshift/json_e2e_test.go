package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner"
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
