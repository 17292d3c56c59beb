package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// TestDemoWithPostgresState is the demo with upshift's own state in a
// PostgreSQL of the lab's own (`lab demo --state postgres`): the upgrade
// is as invisible to clients, the run is in PostgreSQL (not in the lab's
// playbook folder), `upshift status` reads it there with who ran it and
// the write-outage window, and `lab down` stops the state server. `make
// e2e` runs it (UPSHIFT_E2E_FULL).
func TestDemoWithPostgresState(t *testing.T) {
	if os.Getenv("UPSHIFT_E2E_FULL") == "" {
		t.Skip("make e2e runs it (UPSHIFT_E2E_FULL=1)")
	}
	needHAProxy(t)
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if s, err := lab.Load(dir); err == nil {
			_ = lab.Down(s, io.Discard)
			_ = lab.Purge(s)
		}
	})
	out, err := upshift(t, "lab", "demo", "--dir", dir, "--state", "postgres", "--playbook", shippedPlaybook, "--warmup", "1s").CombinedOutput()
	require.NoError(t, err, "%s", out)
	text := string(out)
	assert.Contains(t, text, "State: PostgreSQL of the lab's own")
	assert.Equal(t, "0", readsRE.FindStringSubmatch(text)[2], "failed reads")
	assert.Equal(t, "0", writesRE.FindStringSubmatch(text)[3], "failed writes")
	assert.Equal(t, "0", lostRE.FindStringSubmatch(text)[1], "lost writes")
	assert.NotContains(t, text, "FAILED")

	playbook := filepath.Join(dir, "playbook")
	_, err = os.Stat(filepath.Join(playbook, ".upshift", "state", "clusters"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the run's journal is in PostgreSQL, not in the playbook's folder")
	env, err := lab.StartStateDB(context.Background(), dir) // running already: its environment
	require.NoError(t, err)
	status := upshift(t, "status", playbook)
	status.Env = append(status.Env, env...)
	b, err := status.CombinedOutput()
	require.NoError(t, err, "%s", b)
	assert.Contains(t, string(b), ": done")
	assert.Contains(t, string(b), "begun by ")
	assert.Regexp(t, `write outage: writes refused for \S+ .*backup .*copy .*first item's stop to enable \(node-\d\)`, string(b))

	s, err := lab.Load(dir)
	require.NoError(t, err)
	state := postgresd.DetachedAt(filepath.Join(dir, "state-postgres"))
	require.True(t, state.Running())
	require.NoError(t, lab.Down(s, io.Discard))
	assert.False(t, state.Running(), "lab down stops the state server too")
}
