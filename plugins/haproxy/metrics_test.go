package main

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// send makes n GETs of path through the lab's HAProxy and counts the
// answers by status, as a client saw them.
func (l *lab) send(t *testing.T, path string, n int) map[int]int64 {
	t.Helper()
	seen := map[int]int64{}
	for i := 0; i < n; i++ {
		resp, err := http.Get(l.inst.URL() + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.StatusCode]++
	}
	return seen
}

// delta is what happened between two samples of the counters.
func delta(before, after lbkit.Counters) lbkit.Counters {
	d := after
	d.Requests -= before.Requests
	for i := range d.HTTP {
		d.HTTP[i] -= before.HTTP[i]
	}
	d.ConnectionErrors -= before.ConnectionErrors
	d.ResponseErrors -= before.ResponseErrors
	d.Retries -= before.Retries
	d.Redispatches -= before.Redispatches
	return d
}

func sumServers(m lbkit.Metrics) lbkit.Counters {
	var c lbkit.Counters
	for _, s := range m.Servers {
		c.Add(s.Counters)
	}
	return c
}

// TestMetricsAgreeWithClients: HAProxy's own counters, read by the metrics
// action, count exactly what clients met: answers from the servers by
// status class, per server and for the backend, and the 503s HAProxy gives
// itself when no server is in rotation, which only the backend counts.
func TestMetricsAgreeWithClients(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	ctx := context.Background()
	lb := l.lb(false)
	before, err := lb.Metrics(ctx)
	require.NoError(t, err)
	require.Len(t, before.Servers, 3)

	ok := l.send(t, "/", 12)
	notFound := l.send(t, "/status/404", 4)
	failed := l.send(t, "/status/500", 6)
	require.Equal(t, map[int]int64{200: 12}, ok)
	require.Equal(t, map[int]int64{404: 4}, notFound)
	require.Equal(t, map[int]int64{500: 6}, failed)

	mid, err := lb.Metrics(ctx)
	require.NoError(t, err)
	got := delta(sumServers(before), sumServers(mid))
	assert.Equal(t, [5]int64{0, 12, 0, 4, 6}, got.HTTP, "servers' answers by class")
	assert.Equal(t, int64(22), got.Requests)
	b := delta(before.Backend, mid.Backend)
	assert.Equal(t, [5]int64{0, 12, 0, 4, 6}, b.HTTP, "the backend saw the same")
	assert.Equal(t, int64(22), b.Requests)
	perServer := map[string]int64{}
	for i, s := range mid.Servers {
		perServer[s.Name] = s.HTTP[1] - before.Servers[i].HTTP[1]
	}
	assert.Equal(t, l.hits()["s1"]+l.hits()["s2"]+l.hits()["s3"], int64(22), "every request reached a server")
	assert.Equal(t, int64(12), perServer["s1"]+perServer["s2"]+perServer["s3"])

	// Nobody in rotation: HAProxy answers 503 itself, counted by the
	// backend and by no server.
	for _, s := range []string{"s1", "s2", "s3"} {
		require.NoError(t, l.client.SetServerState(ctx, l.inst.Backend, s, runtimeapi.StateMaint))
	}
	unavailable := l.send(t, "/", 5)
	require.Equal(t, map[int]int64{503: 5}, unavailable)
	after, err := lb.Metrics(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), delta(mid.Backend, after.Backend).HTTP[4], "503s from HAProxy itself")
	assert.Equal(t, int64(0), delta(sumServers(mid), sumServers(after)).HTTP[4], "no server answered them")
}
