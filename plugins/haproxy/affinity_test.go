package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// answer is one request of a persistent client.
type answer struct {
	at     time.Time
	server string // the server HAProxy names (haproxyd.ServerHeader)
	status int    // 0: no answer
}

// persistentClient is one browser-like client: a cookie jar, a request
// every 20ms until stopped.
type persistentClient struct {
	mu      sync.Mutex
	answers []answer
	stop    chan struct{}
	done    chan struct{}
}

func startPersistentClient(t *testing.T, url string) *persistentClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	// A new connection per request: persistence is the cookie's, not a
	// kept-alive connection's.
	client := &http.Client{Jar: jar, Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	c := &persistentClient{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			a := answer{at: time.Now()}
			if resp, err := client.Get(url + "/"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				a.status, a.server = resp.StatusCode, resp.Header.Get(haproxyd.ServerHeader)
			}
			c.mu.Lock()
			c.answers = append(c.answers, a)
			c.mu.Unlock()
			select {
			case <-c.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(c.halt)
	return c
}

func (c *persistentClient) halt() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *persistentClient) all() []answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]answer(nil), c.answers...)
}

func TestAffinityReportsCookiePersistence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off, err := startLab(t).lb(false).Affinity(ctx)
	require.NoError(t, err)
	assert.False(t, off.On)
	assert.Contains(t, off.How, "no cookie persistence")
	assert.Contains(t, off.Enable, "cookie SRV insert indirect nocache")
	assert.Contains(t, lbkit.AffinityWarning(off), "warning: session affinity is off")

	on, err := startLabWith(t, haproxyd.Config{Cookie: "SRV"}).lb(false).Affinity(ctx)
	require.NoError(t, err)
	assert.True(t, on.On, "%+v", on)
	assert.Contains(t, on.How, "cookie SRV")
	assert.Empty(t, lbkit.AffinityWarning(on))
}

// TestDrainRedispatchesPersistentSessionsAtTheTimeout: with cookie
// persistence, a draining server keeps the client its cookie names for
// the whole drain timeout; at the timeout the drain puts it in
// maintenance, HAProxy answers the client from another server, and no
// request fails.
func TestDrainRedispatchesPersistentSessionsAtTheTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	l := startLabWith(t, haproxyd.Config{Cookie: "SRV"})
	lb := l.lb(false)
	c := startPersistentClient(t, l.inst.URL())
	require.Eventually(t, func() bool { return len(c.all()) >= 5 }, 5*time.Second, 10*time.Millisecond)
	pinned := c.all()[0].server
	for _, a := range c.all() {
		require.Equal(t, pinned, a.server, "the cookie keeps the client on one server before the drain")
	}

	var progress progressLog
	start := time.Now()
	res, err := lb.Drain(context.Background(), lbkit.DrainArgs{Server: pinned, Timeout: timeout, MinInService: 1}, progress.add)
	end := time.Now()
	require.NoError(t, err, "%s", strings.Join(progress.all(), "\n"))
	assert.Equal(t, lbkit.ServerResult{Server: pinned, State: lbkit.StateMaint}, res)
	time.Sleep(300 * time.Millisecond)
	c.halt()

	var during, after, failed int
	var firstMoved time.Time
	for _, a := range c.all() {
		if a.status != http.StatusOK {
			failed++
			continue
		}
		if a.server != pinned && firstMoved.IsZero() {
			firstMoved = a.at
		}
		switch {
		case a.at.After(start) && a.at.Before(start.Add(timeout)):
			during++
			assert.Equal(t, pinned, a.server, "a request during the drain left the draining server at %s", a.at.Sub(start))
		case a.at.After(end):
			after++
			assert.NotEqual(t, pinned, a.server, "a request after the drain still went to the drained server")
		}
	}
	require.False(t, firstMoved.IsZero(), "the client was never redispatched")
	moved := firstMoved.Sub(start)
	t.Logf("persistent client on %s: drain timeout %s, drain returned after %s, redispatched %s after the drain began; %d requests during the drain (all on %s), %d after it, %d failed of %d",
		pinned, timeout, end.Sub(start).Round(time.Millisecond), moved.Round(time.Millisecond), during, pinned, after, failed, len(c.all()))
	assert.Zero(t, failed, "failed requests")
	assert.GreaterOrEqual(t, moved, timeout, "redispatched before the drain timeout")
	assert.Less(t, moved, timeout+time.Second, "redispatched long after the drain timeout")
	assert.Greater(t, during, 30, "the client kept coming to the draining server")
	assert.Greater(t, after, 5)
	assert.Contains(t, strings.Join(progress.all(), "\n"), "redispatched")
}

// TestDrainEndsWhenPersistentSessionsEnd: a persistent client that stops
// coming ends its session; the drain does not wait for its timeout.
func TestDrainEndsWhenPersistentSessionsEnd(t *testing.T) {
	t.Parallel()
	l := startLabWith(t, haproxyd.Config{Cookie: "SRV"})
	lb := l.lb(false)
	lb.sessionIdle = 300 * time.Millisecond
	c := startPersistentClient(t, l.inst.URL())
	require.Eventually(t, func() bool { return len(c.all()) >= 5 }, 5*time.Second, 10*time.Millisecond)
	pinned := c.all()[0].server
	go func() { time.Sleep(time.Second); c.halt() }()
	start := time.Now()
	_, err := lb.Drain(context.Background(), lbkit.DrainArgs{Server: pinned, Timeout: 20 * time.Second, MinInService: 1}, nil)
	took := time.Since(start)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, took, time.Second+lb.sessionIdle, "the drain ended while the client still came")
	assert.Less(t, took, 5*time.Second, "the drain waited for its timeout though the session had ended")
	for _, a := range c.all() {
		assert.Equal(t, http.StatusOK, a.status)
		assert.Equal(t, pinned, a.server, "the client stayed on its server until it stopped")
	}
}
