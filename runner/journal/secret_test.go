package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSecret = "pw-Zq81x-s3cret"

// everyFile returns the contents of every file under dir, by path.
func everyFile(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	}))
	return out
}

// A copy's dsn (its password) is what a resume needs and what must not be
// on disk in clear: not in run.json, run.log, or history, and not in what a
// reader such as `upshift status` loads. The writer's Load opens it.
func TestNoSecretAtRest(t *testing.T) {
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	c := testCluster("c1", "/run/haproxy.sock")
	dir, err := store.Register(c)
	require.NoError(t, err)

	digest := sha256.Sum256([]byte("variables with " + testSecret))
	rawDigest := hex.EncodeToString(digest[:])
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1", Digest: rawDigest}))
	wire := json.RawMessage(`{"dsn":"postgres://app:` + testSecret + `@db/app_b"}`)
	copyStep := Step{Address: "step.copy", Status: Done, Result: json.RawMessage(`{"dsn":"(sensitive)"}`),
		ResultType: json.RawMessage(`["object",{"dsn":"string"}]`), ResultWire: wire}
	require.NoError(t, j.Update(copyStep))

	check := func(when string) {
		t.Helper()
		for p, text := range everyFile(t, store.Dir()) {
			assert.NotContains(t, text, testSecret, "%s: %s holds the secret in clear", when, p)
			assert.NotContains(t, text, rawDigest, "%s: %s holds the unkeyed digest", when, p)
		}
	}
	check("in the log")

	// The writer (the runner resuming) gets the value back.
	run, err := mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.JSONEq(t, string(wire), string(run.Steps["step.copy"].ResultWire))
	assert.True(t, j.SameDigest(run, rawDigest))
	// A reader (status) gets nothing of it.
	clusters, err := store.Clusters()
	require.NoError(t, err)
	require.Len(t, clusters, 1)
	assert.Empty(t, clusters[0].Current.Steps["step.copy"].ResultWire)
	cur, err := store.Current(c)
	require.NoError(t, err)
	assert.Empty(t, cur.Steps["step.copy"].ResultWire)

	require.NoError(t, j.Close())
	// Resuming compacts: the snapshot holds it, still sealed.
	j = mustOpen(t, dir)
	require.NoError(t, j.Update(Step{Address: "step.next", Status: Running}))
	check("after a resume")
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.JSONEq(t, string(wire), string(run.Steps["step.copy"].ResultWire))

	require.NoError(t, j.Finish(Done))
	require.NoError(t, j.Begin(&Run{ID: "r2", Digest: rawDigest}))
	check("in history")
	hist, err := j.History()
	require.NoError(t, err)
	require.Len(t, hist, 1)
	old, err := LoadFile(hist[0])
	require.NoError(t, err)
	assert.Empty(t, old.Steps["step.copy"].ResultWire)

	fi, err := os.Stat(filepath.Join(dir, keyName))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the key is the owner's only")
}

// The digest is keyed per state folder: the same playbook and variables
// give unrelated digests in two folders, and neither is the plain hash.
func TestDigestIsKeyedPerFolder(t *testing.T) {
	var kept []string
	for range 2 {
		dir := t.TempDir()
		j := mustOpen(t, dir)
		require.NoError(t, j.Begin(&Run{ID: "r1", Digest: "abc123"}))
		run, err := mustOpen(t, dir).Load()
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(run.Digest, digestPrefix), run.Digest)
		assert.True(t, j.SameDigest(run, "abc123"))
		assert.False(t, j.SameDigest(run, "abc124"))
		kept = append(kept, run.Digest)
	}
	assert.NotEqual(t, kept[0], kept[1])
	// A run recorded by an older upshift keeps the digest in clear.
	assert.True(t, (&Journal{}).SameDigest(&Run{Digest: "abc123"}, "abc123"))
}

// A journal damaged after it was written (bit flip, truncation, an edit
// that leaves valid JSON) is refused whole, naming the file; the torn last
// line a crash leaves is not damage (TestTornLastLine).
func TestDamagedJournalIsRefused(t *testing.T) {
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		j := mustOpen(t, dir)
		require.NoError(t, j.Begin(&Run{ID: "r1", Steps: map[string]*Step{"step.a": {Address: "step.a", Status: Pending}}}))
		require.NoError(t, j.Update(Step{Address: "step.a", Status: Done, Attempts: 1}))
		require.NoError(t, j.Update(Step{Address: "step.b", Status: Running, Attempts: 1}))
		require.NoError(t, j.Close())
		return dir
	}
	edit := func(t *testing.T, path string, f func(string) string) {
		t.Helper()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		after := f(string(b))
		require.NotEqual(t, string(b), after)
		require.NoError(t, os.WriteFile(path, []byte(after), 0o600))
	}
	for name, tc := range map[string]struct {
		file string
		line int
		f    func(string) string
	}{
		"snapshot bit flipped": {snapshotName, 0, func(s string) string {
			i := strings.Index(s, `"pending"`) + 2
			return s[:i] + string(s[i]^0x01) + s[i+1:]
		}},
		"snapshot edited":    {snapshotName, 0, func(s string) string { return strings.Replace(s, `"pending"`, `"done"`, 1) }},
		"snapshot truncated": {snapshotName, 0, func(s string) string { return s[:len(s)/2] }},
		"snapshot without its checksum": {snapshotName, 0, func(s string) string {
			i := strings.LastIndex(s, sumField)
			return s[:i] + "}\n"
		}},
		"first record edited": {logName, 1, func(s string) string { return strings.Replace(s, `"done"`, `"skipped"`, 1) }},
		"last record edited": {logName, 2, func(s string) string {
			return strings.Replace(s, `"status":"running"`, `"status":"done"`, 1)
		}},
		"first record cut": {logName, 1, func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return lines[0][:40] + "\n" + lines[1]
		}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := setup(t)
			path := filepath.Join(dir, tc.file)
			edit(t, path, tc.f)
			before := everyFile(t, dir)

			_, err := mustOpen(t, dir).Load()
			var corrupt *CorruptError
			require.ErrorAs(t, err, &corrupt)
			assert.Equal(t, path, corrupt.Path)
			assert.Equal(t, tc.line, corrupt.Line)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "restore the file from a backup, or move it aside")

			j := mustOpen(t, dir)
			assert.ErrorAs(t, j.Update(Step{Address: "step.c", Status: Done}), &corrupt, "a writer must not build on it")
			assert.ErrorAs(t, j.Finish(Aborted), &corrupt)
			assert.Equal(t, before, everyFile(t, dir), "the damaged files are left as they are")
		})
	}
}

// A journal written before checksums (format 1) is still read, and the
// next writer rewrites it with them.
func TestFormat1StillRead(t *testing.T) {
	dir := t.TempDir()
	snap := `{"version":1,"seq":1,"run":{"id":"r1","playbook":"p","digest":"d1","started_at":"2026-03-14T12:00:00Z","updated_at":"2026-03-14T12:00:00Z","status":"running","steps":{
"step.a":{"address":"step.a","status":"done","idempotent":false,"result_wire":{"x":1}}
}}}
`
	logText := `{"seq":2,"run":"r1","at":"2026-03-14T12:00:01Z","step":{"address":"step.b","status":"done","idempotent":false}}` + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, snapshotName), []byte(snap), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, logName), []byte(logText), 0o600))

	j := mustOpen(t, dir)
	run, err := j.Load()
	require.NoError(t, err)
	assert.Equal(t, []string{"step.a", "step.b"}, sortedKeys(run.Steps))
	assert.JSONEq(t, `{"x":1}`, string(run.Steps["step.a"].ResultWire))
	assert.True(t, j.SameDigest(run, "d1"))

	require.NoError(t, j.Update(Step{Address: "step.c", Status: Done}))
	assert.Contains(t, readFile(t, filepath.Join(dir, snapshotName)), `{"version":2,`)
	assert.Contains(t, readFile(t, filepath.Join(dir, snapshotName)), sumField)
	assert.NotContains(t, readFile(t, filepath.Join(dir, snapshotName)), `{"x":1}`, "sealed when rewritten")
	run, err = mustOpen(t, dir).Load()
	require.NoError(t, err)
	assert.Equal(t, []string{"step.a", "step.b", "step.c"}, sortedKeys(run.Steps))
	assert.JSONEq(t, `{"x":1}`, string(run.Steps["step.a"].ResultWire))
}

// Without its key a sealed result cannot be read: the writer is told which
// file and what to do instead of resuming with a null.
func TestMissingKeyIsNamed(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	require.NoError(t, j.Update(Step{Address: "step.copy", Status: Done, ResultWire: json.RawMessage(`{"dsn":"x"}`)}))
	require.NoError(t, j.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, keyName)))
	_, err := mustOpen(t, dir).Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, keyName))
	assert.Contains(t, err.Error(), "step.copy")
}

// A run whose key is lost can still be given up: abort needs no result.
func TestAbortWithoutKey(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	require.NoError(t, j.Update(Step{Address: "step.copy", Status: Done, ResultWire: json.RawMessage(`{"dsn":"x"}`)}))
	require.NoError(t, j.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, keyName)))
	j = mustOpen(t, dir)
	require.NoError(t, j.Finish(Aborted))
	run, err := (&Journal{dir: dir}).Load()
	require.NoError(t, err)
	assert.Equal(t, Aborted, run.Status)
	require.NoError(t, j.Begin(&Run{ID: "r2"}), "and a new run begins")
}

// Runs archived by an older upshift kept their results in clear: the next
// run's Begin rewrites them without.
func TestOldHistoryIsScrubbed(t *testing.T) {
	dir := t.TempDir()
	hist := filepath.Join(dir, historyName)
	require.NoError(t, os.MkdirAll(hist, 0o700))
	old := `{"version":1,"seq":1,"run":{"id":"r0","playbook":"p","digest":"d","started_at":"2026-03-14T12:00:00Z","updated_at":"2026-03-14T12:00:00Z","status":"done","steps":{
"step.copy":{"address":"step.copy","status":"done","idempotent":false,"result":{"dsn":"(sensitive)"},"result_wire":{"dsn":"postgres://u:` + testSecret + `@db/b"}}
}}}
`
	path := filepath.Join(hist, "20260314T120000Z-r0.json")
	require.NoError(t, os.WriteFile(path, []byte(old), 0o600))
	j := mustOpen(t, dir)
	require.NoError(t, j.Begin(&Run{ID: "r1"}))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(b), testSecret)
	run, err := LoadFile(path)
	require.NoError(t, err)
	assert.Equal(t, Done, run.Steps["step.copy"].Status)
	assert.JSONEq(t, `{"dsn":"(sensitive)"}`, string(run.Steps["step.copy"].Result))
}

// A reader (status) of a journal an older upshift wrote gets none of the
// results it kept in clear.
func TestReaderGetsNoClearResultOfAnOlderJournal(t *testing.T) {
	store, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	c := testCluster("c1", "/run/haproxy.sock")
	dir, err := store.Register(c)
	require.NoError(t, err)
	snap := `{"version":1,"seq":1,"run":{"id":"r1","playbook":"p","digest":"d1","started_at":"2026-03-14T12:00:00Z","updated_at":"2026-03-14T12:00:00Z","status":"running","steps":{
"step.copy":{"address":"step.copy","status":"done","idempotent":false,"result_wire":{"dsn":"` + testSecret + `"}}
}}}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, snapshotName), []byte(snap), 0o600))
	cur, err := store.Current(c)
	require.NoError(t, err)
	assert.Empty(t, cur.Steps["step.copy"].ResultWire)
}
