package runtimeapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/internal/testlab"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// startHAProxy runs a real HAProxy in front of test backends with the given
// names, in backend "app".
func startHAProxy(t testing.TB, names ...string) *haproxyd.HAProxy {
	t.Helper()
	if !haproxyd.Available() {
		t.Skip("haproxy is not installed")
	}
	var servers []haproxyd.Server
	for _, n := range names {
		be := testlab.StartBackend(t, n)
		servers = append(servers, haproxyd.Server{Name: n, Addr: be.Addr})
	}
	inst, err := haproxyd.Start(context.Background(), haproxyd.Config{Servers: servers, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = inst.Stop() })
	return inst
}

// BenchmarkShowStat measures one `show stat` round trip and parse: the cost
// of each poll of drain and enable.
func BenchmarkShowStat(b *testing.B) {
	c := startHAProxy(b, "s1", "s2", "s3").Client()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := c.Servers(ctx, "app"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestClientErrors(t *testing.T) {
	inst := startHAProxy(t, "s1")
	ctx := context.Background()
	c := inst.Client()
	err := c.SetServerState(ctx, "app", "nope", runtimeapi.StateDrain)
	var ce *runtimeapi.CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "No such server.", ce.Reply)

	_, err = c.Do(ctx, "show stat\nshutdown frontend fe")
	assert.ErrorContains(t, err, "newline")

	missing := t.TempDir() + "/nope.sock"
	_, err = runtimeapi.NewClient(missing, time.Second).ShowStat(ctx)
	var se *runtimeapi.SocketError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "HAProxy admin socket "+missing+": no such file or directory", err.Error())
}

func TestParseStat(t *testing.T) {
	rows, err := runtimeapi.ParseStat("# pxname,svname,status,scur,\napp,s1,UP,3,\napp,BACKEND,UP,3,\n")
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, "UP", rows[0]["status"])
	assert.Equal(t, 3, rows[0].Int("scur"))
	assert.True(t, rows[0].IsServer())
	assert.False(t, rows[1].IsServer())
	_, err = runtimeapi.ParseStat("Unknown command.\n")
	assert.ErrorContains(t, err, "Unknown command.")
}
