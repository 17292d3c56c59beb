package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample(at time.Time, requests, errs int64) Sample {
	return Sample{Rollout: "upgrade", At: at, Backend: &Counters{Requests: requests, HTTP5xx: errs},
		Servers: []ServerCounters{{Name: "node-2", Counters: Counters{Requests: requests / 2, HTTP5xx: errs}}}}
}

// TestSamplesAreKept: a guard's samples go to the log beside the steps,
// survive a reload, a torn last line and compaction, and end in the
// archived run; the snapshot says format 3 from the first sample on, and a
// run without samples stays format 2.
func TestSamplesAreKept(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	snap := filepath.Join(dir, snapshotName)
	assert.Contains(t, readFile(t, snap), `{"version":2,`, "no samples yet: an older upshift reads it")

	require.NoError(t, j.RecordSample(sample(t0, 100, 0)))
	assert.Contains(t, readFile(t, snap), `{"version":3,`, "the snapshot says format 3 before a sample is in the log")
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done}))
	require.NoError(t, j.RecordSample(Sample{Rollout: "upgrade", At: t0.Add(time.Second), Error: "metrics: connection refused"}))
	require.NoError(t, j.RecordSample(sample(t0.Add(2*time.Second), 300, 4)))
	require.NoError(t, j.Sync())

	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	require.Len(t, run.Samples, 3)
	assert.Equal(t, "metrics: connection refused", run.Samples[1].Error)
	assert.Equal(t, int64(4), run.Samples[2].Backend.HTTP5xx)
	assert.Equal(t, "node-2", run.Samples[2].Servers[0].Name)
	assert.Equal(t, Done, run.Steps["step.a"].Status)

	rates := run.Rates()
	require.Len(t, rates, 1, "the failed sample is spanned")
	assert.InDelta(t, 100, rates[0].Requests, 0.01)
	assert.InDelta(t, 2, rates[0].Errors, 0.01)

	// A crash while a sample was being appended: the cut line is ignored.
	require.NoError(t, j.Close())
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":9,"run":"r1","at":"2026-03-14T12:00:00Z","sample":{"rollout":"upg`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	j = mustOpen(t, dir)
	run, err = j.Load()
	require.NoError(t, err)
	assert.Len(t, run.Samples, 3)

	require.NoError(t, j.RecordSample(sample(t0.Add(3*time.Second), 400, 4)))
	require.NoError(t, j.Finish(Done))
	assert.Empty(t, readFile(t, filepath.Join(dir, logName)), "compacted")
	body := readFile(t, snap)
	assert.Contains(t, body, `,"samples":[`+"\n")
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Len(t, run.Samples, 4)

	// The next run archives it with its samples, and begins without any.
	j2 := mustOpen(t, dir)
	require.NoError(t, j2.Begin(&Run{ID: "r2"}))
	assert.Contains(t, readFile(t, snap), `{"version":2,`)
	hist, err := j2.History()
	require.NoError(t, err)
	require.Len(t, hist, 1)
	old, err := LoadFile(hist[0])
	require.NoError(t, err)
	assert.Len(t, old.Samples, 4)
}

// TestDamagedSampleIsRefused: a sample record edited after it was written
// is damage, as a step record would be.
func TestDamagedSampleIsRefused(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	require.NoError(t, j.RecordSample(sample(t0, 100, 0)))
	require.NoError(t, j.RecordSample(sample(t0.Add(time.Second), 200, 0)))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done}))
	logPath := filepath.Join(dir, logName)
	b := readFile(t, logPath)
	require.Contains(t, b, `"requests":200`)
	require.NoError(t, os.WriteFile(logPath, []byte(strings.Replace(b, `"requests":200`, `"requests":201`, 1)), 0o600))
	_, err := mustOpen(t, dir).Load()
	var corrupt *CorruptError
	assert.ErrorAs(t, err, &corrupt)
}

func TestRatesCountAResetFromZero(t *testing.T) {
	run := &Run{Samples: []Sample{sample(t0, 1000, 10), sample(t0.Add(2*time.Second), 40, 2)}}
	rates := run.Rates()
	require.Len(t, rates, 1)
	assert.InDelta(t, 20, rates[0].Requests, 0.01)
	assert.InDelta(t, 1, rates[0].Errors, 0.01)
}

// TestProbeCountsAreKept: a probe-only guard's samples (no backend
// counters) keep their probes' counts through the log and compaction, in
// format 3, and Rates leaves them out.
func TestProbeCountsAreKept(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	probe := func(at time.Time, req, failed int64) Sample {
		return Sample{Rollout: "upgrade", At: at, Probes: []ProbeCounts{{URL: "http://lb.example/healthz", Requests: req, Failed: failed}}}
	}
	require.NoError(t, j.RecordSample(probe(t0, 5, 0)))
	require.NoError(t, j.RecordSample(probe(t0.Add(time.Second), 10, 3)))
	require.NoError(t, j.Sync())
	snap := filepath.Join(dir, snapshotName)
	assert.Contains(t, readFile(t, snap), `{"version":3,`)
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	require.Len(t, run.Samples, 2)
	assert.Equal(t, []ProbeCounts{{URL: "http://lb.example/healthz", Requests: 10, Failed: 3}}, run.Samples[1].Probes)
	assert.Nil(t, run.Samples[1].Backend)
	assert.Empty(t, run.Rates())

	require.NoError(t, j.Finish(Done))
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	require.Len(t, run.Samples, 2)
	assert.Equal(t, int64(3), run.Samples[1].Probes[0].Failed)
}
