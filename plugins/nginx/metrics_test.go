package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// send makes n GETs of path through the lab's nginx and counts the answers
// by status, as a client saw them.
func (l *lab) send(t *testing.T, path string, n int) map[int]int64 {
	t.Helper()
	seen := map[int]int64{}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < n; i++ {
		resp, err := c.Get(l.inst.URL() + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.StatusCode]++
	}
	return seen
}

func byName(m lbkit.Metrics) map[string]lbkit.Counters {
	out := map[string]lbkit.Counters{}
	for _, s := range m.Servers {
		out[s.Name] = s.Counters
	}
	return out
}

// TestMetricsFromTheAccessLog: the metrics action counts, from nginx's own
// access log, what clients met (answers by class, for the backend and per
// server), and also what they did not see: a request nginx passed to the
// next server after a dead one refused it is a connection error of that
// server and a redispatch, while the client got its 200.
func TestMetricsFromTheAccessLog(t *testing.T) {
	l := startLab(t)
	ctx := context.Background()
	lb := NewLB(Options{NginxConf: l.inst.Conf, UpstreamFile: l.inst.Upstream, Upstream: l.inst.Name, PidFile: l.inst.PidFile, AccessLog: l.inst.AccessLog})
	l.send(t, "/", 3) // before counting starts: not counted
	// nginx writes a request's line once it has answered: wait for the
	// lines, not for time.
	lines := func() int {
		b, _ := os.ReadFile(l.inst.AccessLog)
		return strings.Count(string(b), "\n")
	}
	require.Eventually(t, func() bool { return lines() == 3 }, 5*time.Second, 5*time.Millisecond)
	hitsBefore := map[string]int64{}
	for name, b := range l.backends {
		hitsBefore[name] = b.Hits()
	}
	start, err := lb.Metrics(ctx)
	require.NoError(t, err)
	assert.Zero(t, start.Backend.Requests, "counting starts at the first sample")
	require.Len(t, start.Servers, 3)

	require.Equal(t, map[int]int64{200: 12}, l.send(t, "/", 12))
	require.Equal(t, map[int]int64{404: 4}, l.send(t, "/status/404", 4))
	require.Equal(t, map[int]int64{500: 6}, l.send(t, "/status/500", 6))
	require.Eventually(t, func() bool { return lines() == 3+22 }, 5*time.Second, 5*time.Millisecond)
	m, err := lb.Metrics(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(22), m.Backend.Requests)
	assert.Equal(t, [5]int64{0, 12, 0, 4, 6}, m.Backend.HTTP)
	var sum lbkit.Counters
	for _, c := range byName(m) {
		sum.Add(c)
	}
	assert.Equal(t, [5]int64{0, 12, 0, 4, 6}, sum.HTTP, "each answer counted on the server that gave it")
	for name, c := range byName(m) {
		assert.Equal(t, l.backends[name].Hits()-hitsBefore[name], c.Requests, "%s: requests counted as the backend served them", name)
	}

	// A dead server: nginx tries it, is refused, and passes the request on.
	l.backends["node-2"].Kill()
	got := l.send(t, "/", 9)
	require.Equal(t, map[int]int64{200: 9}, got, "nginx hid the dead server from clients")
	require.Eventually(t, func() bool { return lines() == 3+22+9 }, 5*time.Second, 5*time.Millisecond)
	after, err := lb.Metrics(ctx)
	require.NoError(t, err)
	dead := byName(after)["node-2"]
	assert.GreaterOrEqual(t, dead.ConnectionErrors, int64(1), "the refused attempts count on node-2")
	assert.Equal(t, dead.ConnectionErrors, after.Backend.Redispatches-m.Backend.Redispatches, "each was redispatched")
	assert.Equal(t, int64(31), after.Backend.Requests)
	assert.Equal(t, int64(21), after.Backend.HTTP[1])
}

// TestMetricsSurviveRotation: a rotated (moved and reopened, or truncated)
// log is read from its start; counts go on from where they were.
func TestMetricsSurviveRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	line := func(status, upstream, codes string) string {
		return `127.0.0.1 [05/Dec/2026:03:00:00 +0000] "GET /a\x22 upstream=x HTTP/1.1" ` + status + " upstream=" + upstream + " upstream_status=" + codes + " 0.001\n"
	}
	require.NoError(t, os.WriteFile(path, []byte(line("200", "10.0.0.1:80", "200")), 0o600))
	a := nginxctl.NewAccessLog(path)
	b, _, err := a.Read()
	require.NoError(t, err)
	assert.Zero(t, b.Requests)

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(line("200", "127.0.0.1:1, 127.0.0.1:2", "502, 200") + line("502", "-", "-") + `127.0.0.1 [x] "GET /half" 200 upst`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	b, servers, err := a.Read()
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Requests, "a line nginx has not finished is not counted yet")
	assert.Equal(t, int64(1), b.Redispatches)
	assert.Equal(t, int64(1), servers["127.0.0.1:1"].ConnectionErrors)
	assert.Equal(t, int64(1), servers["127.0.0.1:2"].HTTP[1])
	assert.Equal(t, [5]int64{0, 1, 0, 0, 1}, b.HTTP, "nginx's own 502 counts for the backend")

	require.NoError(t, os.Rename(path, path+".1"))
	require.NoError(t, os.WriteFile(path, []byte(line("404", "127.0.0.1:2", "404")), 0o600))
	b, servers, err = a.Read()
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Requests)
	assert.Equal(t, int64(1), servers["127.0.0.1:2"].HTTP[3])
}

func TestMetricsSayWhatToEnable(t *testing.T) {
	p := startLab(t).provider(t, map[string]cty.Value{})
	resp, _ := call(t, p, "metrics", map[string]cty.Value{})
	require.True(t, resp.Diagnostics.HasErrors())
	msg := resp.Diagnostics.Err().Error()
	assert.Contains(t, msg, "access_log")
	assert.True(t, strings.Contains(msg, "log_format upshift"), msg)
}
