package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner/journal"
)

// statusFixture writes, through the journal, the state a run leaves after
// a copy whose dsn holds a password, and a failed exec whose stderr tries
// to take the terminal over.
func statusFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	store, err := journal.OpenStore(stateDir(dir, ""))
	require.NoError(t, err)
	cdir, err := store.Register(&journal.Cluster{ID: "0123456789abcdef", Resources: []journal.ClusterResource{{Address: "database.main", Kind: "database", Plugin: "postgres", Fields: map[string]string{}}}})
	require.NoError(t, err)
	j, err := journal.Open(cdir)
	require.NoError(t, err)
	defer j.Close()
	require.NoError(t, j.Begin(&journal.Run{ID: "r1", Digest: "d"}))
	require.NoError(t, j.Update(journal.Step{Address: "step.copy", Status: journal.Done,
		Result:     json.RawMessage(`{"dsn":"(sensitive)"}`),
		ResultType: json.RawMessage(`["object",{"dsn":"string"}]`),
		ResultWire: json.RawMessage(`{"dsn":"postgres://app:Hunter2-secret@db/app_b"}`)}))
	require.NoError(t, j.Update(journal.Step{Address: `step.migrate["n1"]`, Status: journal.Failed,
		Error: "exit 1: \x1b]0;owned\x07\r[  9.9s] run done: 0 failed\x1b[2K"}))
	return dir
}

func TestStatusJSONShowsNoSecret(t *testing.T) {
	dir := statusFixture(t)
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"status", "--json", dir}, &out, &errOut), errOut.String())
	assert.NotContains(t, out.String(), "Hunter2-secret")
	assert.NotContains(t, out.String(), "result_wire")
	var doc struct {
		Clusters []struct {
			Current *journal.Run `json:"current"`
		} `json:"clusters"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	require.Len(t, doc.Clusters, 1)
	copied := doc.Clusters[0].Current.Steps["step.copy"]
	assert.Equal(t, journal.Done, copied.Status)
	assert.JSONEq(t, `{"dsn":"(sensitive)"}`, string(copied.Result))
	assert.NotContains(t, out.String(), "\x1b", "JSON escapes control characters")
}

func TestStatusEscapesRemoteText(t *testing.T) {
	dir := statusFixture(t)
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"status", dir}, &out, &errOut), errOut.String())
	assert.NotContains(t, out.String(), "\x1b")
	assert.NotContains(t, out.String(), "\r")
	assert.NotContains(t, out.String(), "\x07")
	assert.Contains(t, out.String(), `exit 1: \x1b]0;owned\x07\r[  9.9s] run done`)
	assert.NotContains(t, out.String(), "Hunter2-secret")
}
