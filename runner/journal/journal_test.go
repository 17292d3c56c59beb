package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 14, 12, 1, 3, 0, time.UTC)

func mustOpen(t testing.TB, dir string) *Journal {
	t.Helper()
	j, err := Open(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// fixedClock makes j's timestamps deterministic, one second apart.
func fixedClock(j *Journal) {
	var mu sync.Mutex
	now := t0
	j.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".upshift", "state")
	j := mustOpen(t, dir)
	assert.Equal(t, dir, j.Path())
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	run, err := j.Load()
	require.NoError(t, err)
	assert.Nil(t, run)
	assert.ErrorIs(t, j.Update(Step{Address: "step.a", Status: Running}), ErrNoRun)
	assert.ErrorIs(t, j.Finish(Done), ErrNoRun)
}

func TestBeginUpdateLoadFinish(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	fixedClock(j)
	require.NoError(t, j.Begin(&Run{
		ID: "r1", Playbook: "playbooks/rolling-upgrade", Digest: "sha256:abc",
		Steps: map[string]*Step{
			"step.backup":          {Address: "step.backup", Status: Pending},
			`step.drain["node-1"]`: {Address: `step.drain["node-1"]`, Status: Pending, Idempotent: true},
		},
	}))

	drain := Step{
		Address: `step.drain["node-1"]`, Status: Running, Action: "load_balancer.front.drain",
		Plugin: "haproxy", Checksum: "sha256:00ff", Args: json.RawMessage(`{"server":"node-1","timeout":"60s"}`),
		Attempts: 1, Idempotent: true, StartedAt: t0.Add(time.Minute),
	}
	require.NoError(t, j.Update(drain))
	drain.Status, drain.EndedAt = Done, t0.Add(2*time.Minute)
	drain.Result = json.RawMessage(`{"drained":true}`)
	drain.ResultType = json.RawMessage(`["object",{"drained":"bool"}]`)
	drain.ResultWire = json.RawMessage(`{"drained":true}`)
	require.NoError(t, j.Update(drain))

	// A second Journal on the same directory (as `upshift status` would
	// open it) sees both updates while the run is going.
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	require.NotNil(t, run)
	assert.Equal(t, "r1", run.ID)
	assert.Equal(t, "playbooks/rolling-upgrade", run.Playbook)
	assert.True(t, j.SameDigest(run, "sha256:abc"), "the digest is kept keyed")
	assert.False(t, j.SameDigest(run, "sha256:abd"))
	assert.Equal(t, Running, run.Status)
	assert.Equal(t, t0.Add(time.Second), run.StartedAt)
	assert.Equal(t, t0.Add(3*time.Second), run.UpdatedAt)
	assert.Equal(t, &drain, run.Steps[drain.Address])
	assert.Equal(t, &Step{Address: "step.backup", Status: Pending}, run.Steps["step.backup"])
	assert.NotEmpty(t, readFile(t, filepath.Join(dir, logName)), "updates go to the log, not the snapshot")

	require.NoError(t, j.Finish(Done))
	assert.Empty(t, readFile(t, filepath.Join(dir, logName)), "Finish folds the log into the snapshot")
	after, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, Done, after.Status)
	assert.Equal(t, run.Steps, after.Steps)
}

func TestSnapshotIsDeterministic(t *testing.T) {
	write := func() string {
		dir := t.TempDir()
		j := mustOpen(t, dir)
		fixedClock(j)
		require.NoError(t, j.Begin(&Run{ID: "r1"}))
		for i := range 50 {
			require.NoError(t, j.Update(Step{Address: fmt.Sprintf("step.s[%d]", (i*7)%23), Status: Done, Attempts: i}))
		}
		require.NoError(t, j.Finish(Done))
		return readFile(t, filepath.Join(dir, snapshotName))
	}
	assert.Equal(t, write(), write())
}

func TestBeginArchivesFinishedRun(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	fixedClock(j)
	require.NoError(t, j.Begin(&Run{ID: "r1/a", StartedAt: t0}))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done}))

	var unfinished *UnfinishedError
	require.ErrorAs(t, j.Begin(&Run{ID: "r2"}), &unfinished)
	assert.Equal(t, "r1/a", unfinished.Run.ID)
	assert.Contains(t, unfinished.Error(), "run r1/a is running, not finished")

	require.NoError(t, j.Finish(Failed))
	assert.ErrorContains(t, j.Begin(&Run{ID: "r1/a"}), "already used")
	require.NoError(t, j.Begin(&Run{ID: "r2"}))

	hist, err := j.History()
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "history", "20260314T120103Z-r1_a.json")}, hist)
	old, err := LoadFile(hist[0])
	require.NoError(t, err)
	assert.Equal(t, Failed, old.Status)
	assert.Contains(t, old.Steps, "step.a")

	cur, err := j.Load()
	require.NoError(t, err)
	assert.Equal(t, "r2", cur.ID)
	assert.Equal(t, Running, cur.Status)
	assert.Empty(t, cur.Steps)
}

// A crash while an update is appended leaves a torn last line: load ignores
// it without touching the file, and the next writer cuts it off so that its
// own appends do not follow garbage.
func TestTornLastLine(t *testing.T) {
	for name, torn := range map[string]string{
		"no newline":   `{"seq":3,"run":"r1","at":"2026-03-14T12:0`,
		"zeros":        "\x00\x00\x00\x00\n",
		"half and nl":  `{"seq":3,"run":"r1","step":{"address":"step.c"` + "\n",
		"only newline": "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j := mustOpen(t, dir)
			require.NoError(t, j.Begin(&Run{ID: "r1"}))
			require.NoError(t, j.Update(Step{Address: "step.a", Status: Done}))
			require.NoError(t, j.Update(Step{Address: "step.b", Status: Running}))
			require.NoError(t, j.Close())
			logPath := filepath.Join(dir, logName)
			f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.WriteString(torn)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			before := readFile(t, logPath)

			j2 := mustOpen(t, dir)
			run, err := j2.Load()
			require.NoError(t, err)
			assert.Equal(t, []string{"step.a", "step.b"}, sortedKeys(run.Steps))
			assert.Equal(t, before, readFile(t, logPath), "Load must not write")

			require.NoError(t, j2.Update(Step{Address: "step.b", Status: Done}))
			require.NoError(t, j2.Update(Step{Address: "step.c", Status: Running}))
			lines := strings.SplitAfter(readFile(t, logPath), "\n")
			require.Len(t, lines, 3, "two records, then nothing")
			assert.True(t, strings.HasPrefix(lines[0], `{"seq":`) && strings.HasPrefix(lines[1], `{"seq":`))
			assert.Empty(t, lines[2])
			run, err = mustOpen(t, dir).Load()
			require.NoError(t, err)
			assert.Equal(t, Done, run.Steps["step.b"].Status)
			assert.Equal(t, Running, run.Steps["step.c"].Status)
		})
	}
}

func TestCorruptFilesAreReportedNotDiscarded(t *testing.T) {
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		j := mustOpen(t, dir)
		require.NoError(t, j.Begin(&Run{ID: "r1"}))
		for _, a := range []string{"step.a", "step.b", "step.c"} {
			require.NoError(t, j.Update(Step{Address: a, Status: Done}))
		}
		return dir
	}

	t.Run("log line in the middle", func(t *testing.T) {
		dir := setup(t)
		logPath := filepath.Join(dir, logName)
		lines := readFile(t, logPath)
		damaged := lines[:20] + "#" + lines[21:]
		require.NoError(t, os.WriteFile(logPath, []byte(damaged), 0o600))

		_, err := mustOpen(t, dir).Load()
		var corrupt *CorruptError
		require.ErrorAs(t, err, &corrupt)
		assert.Equal(t, logPath, corrupt.Path)
		assert.Equal(t, 1, corrupt.Line)
		assert.Contains(t, err.Error(), logPath+" is corrupt at line 1")
		assert.Error(t, mustOpen(t, dir).Update(Step{Address: "step.d", Status: Done}), "a writer must not build on a corrupt log")
		assert.Equal(t, damaged, readFile(t, logPath))
	})

	t.Run("snapshot", func(t *testing.T) {
		dir := setup(t)
		snap := filepath.Join(dir, snapshotName)
		require.NoError(t, os.WriteFile(snap, []byte(`{"version":1,"run":{"id":"r1","steps":{`), 0o600))
		_, err := mustOpen(t, dir).Load()
		var corrupt *CorruptError
		require.ErrorAs(t, err, &corrupt)
		assert.Contains(t, err.Error(), "journal file "+snap+" is corrupt")
		assert.Error(t, mustOpen(t, dir).Begin(&Run{ID: "r2"}))
		assert.FileExists(t, snap)
	})

	t.Run("newer format", func(t *testing.T) {
		dir := setup(t)
		snap := filepath.Join(dir, snapshotName)
		require.NoError(t, os.WriteFile(snap, []byte(`{"version":4,"run":{"id":"r1"}}`), 0o600))
		_, err := mustOpen(t, dir).Load()
		assert.ErrorContains(t, err, "format 4, newer than this upshift understands")
	})

	t.Run("log without snapshot", func(t *testing.T) {
		dir := setup(t)
		require.NoError(t, os.Remove(filepath.Join(dir, snapshotName)))
		_, err := mustOpen(t, dir).Load()
		assert.ErrorContains(t, err, "snapshot "+filepath.Join(dir, snapshotName)+" is missing")
	})
}

// A crash between writing a snapshot and emptying the log leaves records the
// snapshot already holds (compaction) or records of the previous run
// (Begin); load must not apply either.
func TestLeftoverLogRecordsAreSkipped(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, logName)
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Running}))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done}))
	oldLog := readFile(t, logPath)
	require.NoError(t, j.Finish(Done))

	// Crash during Finish's compaction.
	require.NoError(t, os.WriteFile(logPath, []byte(oldLog), 0o600))
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, Done, run.Steps["step.a"].Status)
	assert.Equal(t, Done, run.Status)

	// Crash during the next Begin.
	require.NoError(t, j.Begin(&Run{ID: "r2"}))
	require.NoError(t, os.WriteFile(logPath, []byte(oldLog), 0o600))
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, "r2", run.ID)
	assert.Empty(t, run.Steps)

	// Resuming compacts the leftovers away; sequence numbers continue.
	j2 := mustOpen(t, dir)
	require.NoError(t, j2.Update(Step{Address: "step.b", Status: Running}))
	assert.NotContains(t, readFile(t, logPath), `"run":"r1"`)
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, []string{"step.b"}, sortedKeys(run.Steps))
}

func TestUpdateRejectsBadSteps(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	assert.ErrorContains(t, j.Update(Step{Status: Done}), "no address")
	assert.ErrorContains(t, j.Update(Step{Address: "step.a", Status: "weird"}), "invalid status")
	assert.Error(t, j.Update(Step{Address: "step.a", Status: Done, Args: json.RawMessage(`{not json`)}))
	assert.ErrorContains(t, j.Finish(Running), "invalid run status")
	assert.Empty(t, readFile(t, filepath.Join(dir, logName)))
}

// Parallel steps update concurrently; updates share fsyncs and compactions
// happen in between, and nothing is lost. Run with -race.
func TestConcurrentUpdates(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenWithOptions(dir, Options{CompactAfter: 37})
	require.NoError(t, err)
	defer j.Close()
	require.NoError(t, j.Begin(&Run{ID: "r1"}))

	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				errs <- j.Update(Step{Address: fmt.Sprintf("step.w[%d]", w), Status: Running, Attempts: i + 1})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	require.Len(t, run.Steps, workers)
	for _, s := range run.Steps {
		assert.Equal(t, each, s.Attempts, s.Address)
	}
}

func TestRunWithNonUTCTimesRoundTrips(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	zone := time.FixedZone("X", 5*3600+1800)
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, zone)
	require.NoError(t, j.Begin(&Run{ID: "r1", StartedAt: start}))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done, StartedAt: start, EndedAt: start.Add(time.Millisecond)}))
	run, err := j.Load()
	require.NoError(t, err)
	assert.True(t, run.StartedAt.Equal(start))
	assert.Equal(t, time.Millisecond, run.Steps["step.a"].EndedAt.Sub(run.Steps["step.a"].StartedAt))
}

func sortedKeys(m map[string]*Step) []string {
	var out []string
	for _, r := range Summarize(&Run{Steps: m}) {
		out = append(out, r.Address)
	}
	return out
}

var _ error = (*CorruptError)(nil)
var _ error = (*UnfinishedError)(nil)

// Record hands the record to the OS without a sync; a later Update makes it
// durable, in order.
func TestRecordThenUpdate(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	require.NoError(t, j.Record(Step{Address: "step.a", Status: Running, Idempotent: true}))
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, Running, run.Steps["step.a"].Status, "written to the OS at once when no sync is running")

	require.NoError(t, j.Update(Step{Address: "step.a", Status: Done, Idempotent: true}))
	require.NoError(t, j.Record(Step{Address: "step.b", Status: Running}))
	require.NoError(t, j.Sync())
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, Done, run.Steps["step.a"].Status)
	assert.Equal(t, Running, run.Steps["step.b"].Status)
	assert.ErrorContains(t, j.Record(Step{Address: "step.c"}), "invalid status")
}
