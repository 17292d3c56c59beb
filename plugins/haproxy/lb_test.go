package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

func TestDrainWaitsForInFlightRequest(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)

	server, done := l.slowRequest(t, 1200)
	var progress progressLog
	start := time.Now()
	res, err := lb.Drain(ctx, lbkit.DrainArgs{Server: server, Timeout: 10 * time.Second, MinInService: 1}, progress.add)
	took := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, lbkit.ServerResult{Server: server, State: "maint"}, res)

	// Drain returned only once the request was over: the backend has
	// finished serving it, and the client got its 200.
	assert.Zero(t, l.backends[server].InFlight(), "drain returned while the backend was still serving")
	assert.GreaterOrEqual(t, took, 900*time.Millisecond, "drain returned before the slow request could have finished")
	select {
	case code := <-done:
		assert.Equal(t, 200, code, "the in-flight request was cut")
	case <-time.After(2 * time.Second):
		t.Fatal("the slow request never completed")
	}
	assert.NotEmpty(t, progress.all())
	assert.Contains(t, strings.Join(progress.all(), "\n"), "waiting for 1 in-flight session")

	// MAINT, and no traffic for it.
	assert.Equal(t, "MAINT", l.stat(t, server)["status"])
	before := l.hits()
	l.get(t, 30)
	after := l.hits()
	assert.Equal(t, before[server], after[server], "a drained server got traffic")

	// Enable brings it back: UP, and it takes traffic again.
	progress = progressLog{}
	res, err = lb.Enable(ctx, lbkit.EnableArgs{Server: server, Timeout: 10 * time.Second}, progress.add)
	require.NoError(t, err)
	assert.Equal(t, lbkit.ServerResult{Server: server, State: "ready"}, res)
	assert.Equal(t, "UP", l.stat(t, server)["status"])
	before = l.hits()
	l.get(t, 30)
	assert.Greater(t, l.hits()[server], before[server], "an enabled server got no traffic")
	assert.NotEmpty(t, progress.all())
}

func TestDrainIdempotentAndCheck(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)

	applied, detail, err := lb.CheckDrain(ctx, "s2")
	require.NoError(t, err)
	assert.False(t, applied)
	assert.Contains(t, detail, "s2 is ready")
	applied, _, err = lb.CheckEnable(ctx, "s2")
	require.NoError(t, err)
	assert.True(t, applied, "a ready, UP server is already enabled")

	_, err = lb.Drain(ctx, lbkit.DrainArgs{Server: "s2", MinInService: 1}, nil)
	require.NoError(t, err)
	var progress progressLog
	res, err := lb.Drain(ctx, lbkit.DrainArgs{Server: "s2", MinInService: 1}, progress.add)
	require.NoError(t, err, "drain twice")
	assert.Equal(t, lbkit.ServerResult{Server: "s2", State: "maint"}, res)
	assert.Equal(t, []string{"s2 is already in maintenance"}, progress.all())
	assert.Equal(t, "MAINT", l.stat(t, "s2")["status"])

	applied, detail, err = lb.CheckDrain(ctx, "s2")
	require.NoError(t, err)
	assert.True(t, applied)
	assert.Equal(t, "s2 is in maintenance", detail)
	applied, _, err = lb.CheckEnable(ctx, "s2")
	require.NoError(t, err)
	assert.False(t, applied)

	_, err = lb.Enable(ctx, lbkit.EnableArgs{Server: "s2"}, nil)
	require.NoError(t, err)
	progress = progressLog{}
	_, err = lb.Enable(ctx, lbkit.EnableArgs{Server: "s2"}, progress.add)
	require.NoError(t, err, "enable twice")
	assert.Equal(t, []string{"s2 is already ready and UP"}, progress.all())
}

func TestDrainMinInService(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)

	// All three up: two others are not enough for 3.
	_, err := lb.Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 3}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to drain s1: 2 other server(s)")
	assert.Contains(t, err.Error(), "min_in_service is 3")

	// Others down by their health checks: refused, s1 untouched.
	l.backends["s2"].SetHealthy(false)
	l.backends["s3"].SetHealthy(false)
	l.waitStatus(t, "s2", "DOWN")
	l.waitStatus(t, "s3", "DOWN")
	_, err = lb.Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 1}, nil)
	require.Error(t, err)
	assert.Equal(t, `refusing to drain s1: 0 other server(s) of backend "app" up and ready ((none)), min_in_service is 1; not in service: s2 (ready, DOWN, check L7STS), s3 (ready, DOWN, check L7STS)`, err.Error())
	assert.Equal(t, "UP", l.stat(t, "s1")["status"], "a refused drain changed the server")

	// One back up: allowed. A drained (or maint) other does not count.
	l.backends["s2"].SetHealthy(true)
	l.waitStatus(t, "s2", "UP")
	_, err = lb.Drain(ctx, lbkit.DrainArgs{Server: "s2", MinInService: 1}, nil)
	require.NoError(t, err)
	_, err = lb.Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 1}, nil)
	require.ErrorContains(t, err, "s2 (maint, MAINT)")
	_, err = lb.Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 0}, nil)
	require.NoError(t, err, "min_in_service 0 allows draining the last server")
}

func TestUnknownServerAndBackend(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	_, err := l.lb(false).Drain(ctx, lbkit.DrainArgs{Server: "s9", MinInService: 1}, nil)
	path, ok := sdk.ArgPath(err)
	require.True(t, ok, "an ArgError: %v", err)
	assert.Equal(t, "server", path)
	assert.Equal(t, `server: backend "app" has no server "s9"; its servers are s1, s2, s3`, err.Error())
	_, err = l.lb(false).Enable(ctx, lbkit.EnableArgs{Server: "s9"}, nil)
	path, _ = sdk.ArgPath(err)
	assert.Equal(t, "server", path)

	_, err = NewLB(l.inst.Socket, "nope", "", time.Second).Status(ctx)
	require.Error(t, err)
	assert.Equal(t, `HAProxy at `+l.inst.Socket+` has no backend "nope" (backends: app)`, err.Error())
}

func TestWrongSocket(t *testing.T) {
	t.Parallel()
	missing := t.TempDir() + "/admin.sock"
	_, err := NewLB(missing, "app", "", time.Second).Status(context.Background())
	require.Error(t, err)
	assert.Equal(t, "HAProxy admin socket "+missing+": no such file or directory", err.Error())
	assert.NotContains(t, err.Error(), "\n")
}

func TestDrainTimeout(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	server, done := l.slowRequest(t, 2000)
	_, err := l.lb(false).Drain(context.Background(), lbkit.DrainArgs{Server: server, Timeout: 300 * time.Millisecond, MinInService: 1}, nil)
	require.Error(t, err)
	assert.Equal(t, "server "+server+" still has 1 sessions after 300ms (left in drain: it takes no new requests)", err.Error())
	assert.Equal(t, "DRAIN", l.stat(t, server)["status"])
	assert.Equal(t, 200, <-done, "a timed-out drain must not cut the request")
}

func TestEnableTimeout(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)
	_, err := lb.Drain(ctx, lbkit.DrainArgs{Server: "s3", MinInService: 1}, nil)
	require.NoError(t, err)
	l.backends["s3"].Kill()
	_, err = lb.Enable(ctx, lbkit.EnableArgs{Server: "s3", Timeout: 1500 * time.Millisecond}, nil)
	require.Error(t, err)
	assert.Regexp(t, `^server s3 is not UP after 1.5s; last status: DOWN.*, check L4CON$`, err.Error())
}

func TestStatus(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)
	_, err := lb.Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 1}, nil)
	require.NoError(t, err)
	require.NoError(t, l.client.SetServerState(ctx, "app", "s2", runtimeapi.StateDrain))
	server, done := l.slowRequest(t, 800)
	require.Equal(t, "s3", server, "only s3 takes new requests")

	st, err := lb.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st, 3)
	assert.Equal(t, []string{"s1", "s2", "s3"}, []string{st[0].Name, st[1].Name, st[2].Name})
	assert.Equal(t, [3]string{"maint", "drain", "ready"}, [3]string{st[0].State, st[1].State, st[2].State})
	assert.Equal(t, [3]string{"unknown", "up", "up"}, [3]string{st[0].Health, st[1].Health, st[2].Health})
	assert.Equal(t, 1, st[2].Sessions)
	<-done
}

// TestDrainSurvivesReload: with state_file set, a reload that does not save
// the state itself (as `systemctl reload` would not) keeps the drained
// server in maintenance; without it, the server comes back into rotation.
func TestDrainSurvivesReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("with state_file", func(t *testing.T) {
		l := startLab(t)
		_, err := l.lb(true).Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 1}, nil)
		require.NoError(t, err)
		require.NoError(t, l.inst.ReloadWithoutSave(ctx))
		assert.Equal(t, "MAINT", l.stat(t, "s1")["status"])
		before := l.hits()
		l.get(t, 20)
		assert.Equal(t, before["s1"], l.hits()["s1"], "s1 got traffic after the reload")

		// Enable is saved too: after another reload s1 stays in rotation.
		_, err = l.lb(true).Enable(ctx, lbkit.EnableArgs{Server: "s1"}, nil)
		require.NoError(t, err)
		require.NoError(t, l.inst.ReloadWithoutSave(ctx))
		assert.Equal(t, "UP", l.stat(t, "s1")["status"])
	})
	t.Run("without state_file", func(t *testing.T) {
		l := startLab(t)
		_, err := l.lb(false).Drain(ctx, lbkit.DrainArgs{Server: "s1", MinInService: 1}, nil)
		require.NoError(t, err)
		require.NoError(t, l.inst.ReloadWithoutSave(ctx))
		assert.NotEqual(t, "MAINT", l.stat(t, "s1")["status"], "maint survived a reload without a state file")
	})
}
