package haproxyd_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/internal/testlab"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

func needHAProxy(t *testing.T) {
	t.Helper()
	if !haproxyd.Available() {
		t.Skip("haproxy is not installed")
	}
}

// start runs HAProxy in front of backends s1..sN and waits until every
// server is UP.
func start(t *testing.T, n int) (*haproxyd.HAProxy, []*testlab.Backend) {
	t.Helper()
	needHAProxy(t)
	var servers []haproxyd.Server
	var backends []*testlab.Backend
	for i := 1; i <= n; i++ {
		b := testlab.StartBackend(t, "s"+strconv.Itoa(i))
		backends = append(backends, b)
		servers = append(servers, haproxyd.Server{Name: b.Name, Addr: b.Addr})
	}
	inst, err := haproxyd.Start(context.Background(), haproxyd.Config{Servers: servers, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, inst.Stop()) })
	waitStatus(t, inst.Client(), "s1", "UP")
	return inst, backends
}

func status(t *testing.T, c *runtimeapi.Client, server string) string {
	t.Helper()
	rows, found, err := c.Servers(context.Background(), "app")
	require.NoError(t, err)
	require.True(t, found)
	for _, r := range rows {
		if r["svname"] == server {
			return r["status"]
		}
	}
	t.Fatalf("no server %s", server)
	return ""
}

func waitStatus(t *testing.T, c *runtimeapi.Client, server, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return status(t, c, server) == want }, 5*time.Second, 50*time.Millisecond,
		"server %s never became %s (is %s)", server, want, status(t, c, server))
}

func TestRender(t *testing.T) {
	cfg, err := haproxyd.Render(haproxyd.Config{Servers: []haproxyd.Server{{"a", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}}}, "/run/x", "127.0.0.1:8080")
	require.NoError(t, err)
	for _, want := range []string{
		"stats socket /run/x/admin.sock mode 600 level admin",
		"server-state-file /run/x/server-state",
		"load-server-state-from-file global",
		"option httpchk GET /healthz",
		"default-server inter 500ms fall 2 rise 2",
		"retries 3",
		"option redispatch",
		"bind 127.0.0.1:8080",
		"server a 127.0.0.1:1 check",
		"server b 127.0.0.1:2 check",
	} {
		assert.Contains(t, cfg, want)
	}
	_, err = haproxyd.Render(haproxyd.Config{Servers: []haproxyd.Server{{"a b", "127.0.0.1:1"}}}, "/run/x", "127.0.0.1:8080")
	assert.ErrorContains(t, err, `server name "a b"`)
	_, err = haproxyd.Render(haproxyd.Config{}, "/run/x", "127.0.0.1:8080")
	assert.ErrorContains(t, err, "no servers")
}

func TestStartServeStop(t *testing.T) {
	inst, backends := start(t, 2)
	for i := 0; i < 10; i++ {
		resp, err := http.Get(inst.URL() + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	assert.Equal(t, int64(5), backends[0].Hits(), "round robin")
	assert.Equal(t, int64(5), backends[1].Hits(), "round robin")

	info, err := inst.Client().Info(context.Background())
	require.NoError(t, err)
	worker, err := strconv.Atoi(info["Pid"])
	require.NoError(t, err)
	master := inst.MasterPID()
	require.NoError(t, inst.Stop())
	require.NoError(t, inst.Stop(), "Stop twice")
	// No orphans: master and worker are gone (and reaped or not our child).
	for _, pid := range []int{master, worker} {
		assert.Eventually(t, func() bool { return !procfs.Alive(pid) }, 3*time.Second, 20*time.Millisecond, "pid %d still alive", pid)
	}
	_, err = http.Get(inst.URL() + "/")
	assert.Error(t, err, "frontend still answers after Stop")
}

// TestAnswersNameTheServer: every answer names the server that gave it,
// HAProxy's own error pages included, so a traffic check can say which node
// a failed request was on.
func TestAnswersNameTheServer(t *testing.T) {
	inst, backends := start(t, 1)
	resp, err := http.Get(inst.URL() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "s1", resp.Header.Get(haproxyd.ServerHeader))

	// A POST in flight when its server dies: HAProxy answers 502 itself
	// (it does not replay a POST), and still names the server.
	type answer struct {
		status int
		server string
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Post(inst.URL()+"/write?ms=2000", "text/plain", strings.NewReader("x"))
		if err != nil {
			got <- answer{err: err}
			return
		}
		resp.Body.Close()
		got <- answer{status: resp.StatusCode, server: resp.Header.Get(haproxyd.ServerHeader)}
	}()
	require.Eventually(t, func() bool { return backends[0].InFlight() > 0 }, 5*time.Second, 10*time.Millisecond)
	backends[0].Kill()
	a := <-got
	require.NoError(t, a.err)
	assert.Equal(t, http.StatusBadGateway, a.status)
	assert.Equal(t, "s1", a.server)
}

func TestStartRemovesOwnDir(t *testing.T) {
	needHAProxy(t)
	b := testlab.StartBackend(t, "s1")
	inst, err := haproxyd.Start(context.Background(), haproxyd.Config{Servers: []haproxyd.Server{{Name: "s1", Addr: b.Addr}}})
	require.NoError(t, err)
	_, err = os.Stat(inst.Socket)
	require.NoError(t, err)
	require.NoError(t, inst.Stop())
	_, err = os.Stat(inst.Dir)
	assert.True(t, os.IsNotExist(err), "temp dir left behind: %v", err)
}

func TestReloadKeepsRuntimeState(t *testing.T) {
	inst, _ := start(t, 3)
	ctx := context.Background()
	c := inst.Client()
	require.NoError(t, c.SetServerState(ctx, "app", "s1", runtimeapi.StateMaint))
	require.NoError(t, c.SetServerState(ctx, "app", "s2", runtimeapi.StateDrain))
	before, err := c.Info(ctx)
	require.NoError(t, err)

	require.NoError(t, inst.Reload(ctx))
	after, err := c.Info(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, before["Pid"], after["Pid"], "a new worker serves after the reload")
	st, err := c.ServersState(ctx, "app")
	require.NoError(t, err)
	require.Len(t, st, 3)
	assert.True(t, st[0].InMaint(), "s1 maint kept: %+v", st[0])
	assert.True(t, st[1].InDrain(), "s2 drain kept: %+v", st[1])
	assert.Equal(t, 0, st[2].AdminState)

	// Without saving first, the reload loads the stale file (saved above,
	// before s3 was put in maintenance) and s3's maintenance is lost.
	require.NoError(t, c.SetServerState(ctx, "app", "s3", runtimeapi.StateMaint))
	require.NoError(t, inst.ReloadWithoutSave(ctx))
	st, err = c.ServersState(ctx, "app")
	require.NoError(t, err)
	assert.False(t, st[2].InMaint(), "s3 maint survived a reload that did not save it")
	assert.True(t, st[0].InMaint())
}
