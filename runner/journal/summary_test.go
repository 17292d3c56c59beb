package journal

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func statusRun() *Run {
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	steps := []*Step{
		{Address: "step.read_only[\"node-2\"]", Status: Done, Attempts: 1, StartedAt: at(0), EndedAt: at(0.0123)},
		{Address: "step.read_only[\"node-1\"]", Status: Done, Attempts: 1, StartedAt: at(0), EndedAt: at(0.0456)},
		{Address: "step.backup", Status: Done, Attempts: 1, StartedAt: at(1), EndedAt: at(96.4)},
		{Address: "step.copy", Status: Done, Attempts: 2, StartedAt: at(1), EndedAt: at(13.37)},
		{Address: "step.drain[\"node-1\"]", Status: Done, Attempts: 1, StartedAt: at(100), EndedAt: at(101.5)},
		{Address: "step.stop[\"node-1\"]", Status: Failed, Attempts: 3, StartedAt: at(102), EndedAt: at(132),
			Error: "platformd did not stop within 10s\nlast log line: shutting down"},
		{Address: "step.start[\"node-1\"]", Status: Running, Attempts: 1, StartedAt: at(140)},
		{Address: "step.enable[\"node-1\"]", Status: Skipped},
		{Address: "step.drain[\"node-2\"]", Status: Pending},
	}
	run := &Run{
		ID: "20260314-120103-a1b2", Playbook: "playbooks/rolling-upgrade", Status: Failed,
		StartedAt: t0, UpdatedAt: at(140), Steps: map[string]*Step{},
	}
	for _, s := range steps {
		run.Steps[s.Address] = s
	}
	return run
}

func TestSummarizeOrder(t *testing.T) {
	var got []string
	for _, r := range Summarize(statusRun()) {
		got = append(got, r.Address)
	}
	assert.Equal(t, []string{
		`step.read_only["node-1"]`, `step.read_only["node-2"]`, // same start: by address
		"step.backup", "step.copy",
		`step.drain["node-1"]`, `step.stop["node-1"]`, `step.start["node-1"]`,
		`step.drain["node-2"]`, `step.enable["node-1"]`, // not started: last, by address
	}, got)
	assert.Nil(t, Summarize(nil))
}

func TestFormatGolden(t *testing.T) {
	// Times are stored in UTC and shown in the reader's zone, named.
	saved := time.Local
	time.Local = time.FixedZone("CET", 3600)
	t.Cleanup(func() { time.Local = saved })
	var buf bytes.Buffer
	require.NoError(t, Format(&buf, statusRun()))
	golden := filepath.Join("testdata", "status.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, buf.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run `go test ./runner/journal -run TestFormatGolden -update` to create it")
	assert.Equal(t, string(want), buf.String())

	buf.Reset()
	require.NoError(t, Format(&buf, nil))
	assert.Equal(t, "no run recorded\n", buf.String())
}
