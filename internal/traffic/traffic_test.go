package traffic_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/internal/traffic"
)

func TestSummarizeClassifies(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := time.Millisecond
	samples := []traffic.Sample{
		{At: t0, Kind: traffic.Read, Status: 200, Latency: 2 * ms},
		{At: t0, Kind: traffic.SlowRead, Status: 200, Latency: 300 * ms},
		{At: t0, Kind: traffic.Write, Status: 201, Latency: 4 * ms, ID: "a"},
		{At: t0.Add(time.Second), Kind: traffic.Write, Status: 503, ReadOnly: true},
		{At: t0.Add(time.Second), Kind: traffic.Write, Status: 503, ID: "schema"}, // 503 without the header: a failure
		{At: t0.Add(time.Second), Kind: traffic.Write, Status: 409, ID: "dup"},
		{At: t0.Add(time.Second), Kind: traffic.SlowRead, Status: 502, Node: "node-2"},
		{At: t0.Add(time.Second), Kind: traffic.Read, Err: "connection reset by peer"},
		{At: t0.Add(time.Second), Kind: traffic.Read, Status: 404, ID: "b"},
		{At: t0.Add(time.Second), Kind: traffic.Read, Status: 200, Latency: 8 * ms},
		{At: t0.Add(time.Second), Kind: traffic.Write, Status: 201, Latency: 10 * ms, ID: "c"},
	}
	s := traffic.Summarize(samples, []string{"c"}, t0.Add(500*time.Millisecond))
	assert.Equal(t, 11, s.Requests)
	assert.Equal(t, 6, s.Reads)
	assert.Equal(t, 2, s.SlowReads)
	assert.Equal(t, 4, s.FastReads)
	assert.Equal(t, 3, s.ReadsFailed)
	assert.Equal(t, 2, s.WritesAcked)
	assert.Equal(t, 1, s.WritesReadOnly)
	assert.Equal(t, 2, s.WritesFailed)
	assert.Equal(t, 1, s.LostWrites)
	assert.Equal(t, 5, s.Failed())
	assert.False(t, s.Clean())
	// Latency: fast successful requests only, split at the upgrade.
	assert.Equal(t, 2*ms, s.P50Before)
	assert.Equal(t, 4*ms, s.P99Before)
	assert.Equal(t, 8*ms, s.P50During)
	assert.Equal(t, 10*ms, s.P99During)

	text := s.String()
	assert.Contains(t, text, "reads:  6 sent, 3 failed (2 slow, 4 fast)\n")
	assert.Contains(t, text, "writes: 2 acknowledged, 1 refused cleanly while read-only (503), 2 failed otherwise\n")
	assert.Contains(t, text, "acknowledged writes missing from the final database: 1\n")
	assert.Contains(t, text, "p50 2ms / p99 4ms before the upgrade, p50 8ms / p99 10ms during")
	assert.Contains(t, text, "failed: slow_read  at 03:04:06.000: HTTP 502 (node node-2)")
	assert.Contains(t, text, "failed: read  at 03:04:06.000: connection reset by peer (node ?)")

	clean := traffic.Summarize(samples[:4], nil, time.Time{})
	assert.True(t, clean.Clean())
	assert.Zero(t, clean.P50Before, "a zero time puts everything during")
}

// fakeNode is a platformd-like server in memory: version v, a set of items.
type fakeNode struct {
	mu       sync.Mutex
	version  string
	items    map[string]bool
	readOnly bool
	slowHits int
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("X-Platform-Node", "fake")
	w.Header().Set("X-Platform-Version", f.version)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/slow":
		f.slowHits++
		_, _ = w.Write([]byte(`{"slept_ms":0,"items":0}`))
	case r.Method == http.MethodGet && r.URL.Path == "/items":
		var out struct {
			Items []map[string]string `json:"items"`
		}
		for id := range f.items {
			out.Items = append(out.Items, map[string]string{"id": id, "value": "x"})
		}
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/items/"):
		if !f.items[strings.TrimPrefix(r.URL.Path, "/items/")] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	case r.Method == http.MethodPost && r.URL.Path == "/items":
		if f.readOnly {
			w.Header().Set("X-Upshift-Read-Only", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var body struct{ ID string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.items[body.ID] = true
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func TestLoadMixesKindsAndIsBounded(t *testing.T) {
	node := &fakeNode{version: "1", items: map[string]bool{"seed-1": true, "seed-2": true}}
	srv := httptest.NewServer(node)
	defer srv.Close()

	load := traffic.Start(context.Background(), traffic.Options{URL: srv.URL, Workers: 4, Pause: time.Millisecond, MaxRequests: 400})
	// MaxRequests ends it without Stop.
	require.Eventually(t, func() bool { return len(load.Samples()) == 400 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	samples := load.Stop()
	assert.Len(t, samples, 400, "not one request more")
	kinds := map[traffic.Kind]int{}
	readIDs := map[string]bool{}
	for i, s := range samples {
		kinds[s.Kind]++
		assert.True(t, s.OK(), "%+v", s)
		assert.Equal(t, "fake", s.Node)
		assert.Equal(t, "1", s.Version)
		if s.Kind == traffic.Read {
			readIDs[s.ID] = true
		}
		if i > 0 {
			assert.False(t, s.At.Before(samples[i-1].At), "in the order sent")
		}
	}
	assert.Positive(t, kinds[traffic.SlowRead])
	assert.Positive(t, kinds[traffic.Read])
	assert.Positive(t, kinds[traffic.Write])
	assert.True(t, readIDs["seed-1"] || readIDs["seed-2"], "fast reads use the ids already there")

	lost, err := traffic.Missing(context.Background(), srv.URL, samples)
	require.NoError(t, err)
	assert.Empty(t, lost)
}

func TestLoadStopsAtItsDuration(t *testing.T) {
	srv := httptest.NewServer(&fakeNode{version: "1", items: map[string]bool{}})
	defer srv.Close()
	start := time.Now()
	load := traffic.Start(context.Background(), traffic.Options{URL: srv.URL, Workers: 2, Duration: 200 * time.Millisecond})
	time.Sleep(400 * time.Millisecond)
	samples := load.Samples()
	require.NotEmpty(t, samples)
	assert.Less(t, samples[len(samples)-1].At.Sub(start), 300*time.Millisecond, "no request sent after the duration")
	assert.Len(t, load.Stop(), len(samples))
}

func TestMissingFindsLostWrites(t *testing.T) {
	node := &fakeNode{version: "2", items: map[string]bool{"kept": true}}
	srv := httptest.NewServer(node)
	defer srv.Close()
	samples := []traffic.Sample{
		{Kind: traffic.Write, Status: 201, ID: "kept", Version: "2"},
		{Kind: traffic.Write, Status: 201, ID: "gone", Version: "2"},
		{Kind: traffic.Write, Status: 503, ReadOnly: true, ID: "refused"},
		{Kind: traffic.Read, Status: 200, ID: "read-only-a-read"},
	}
	start := time.Now()
	lost, err := traffic.Missing(context.Background(), srv.URL, samples)
	require.NoError(t, err)
	assert.Equal(t, []string{"gone"}, lost)
	assert.Less(t, time.Since(start), 300*time.Millisecond, "a 404 from the same version is definite, not retried")

	// A 404 from a node of another version is retried, then counted.
	start = time.Now()
	lost, err = traffic.Missing(context.Background(), srv.URL, []traffic.Sample{{Kind: traffic.Write, Status: 201, ID: "on-b", Version: "3"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"on-b"}, lost)
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "retried")
}

// TestFailureNamesTheServerFromTheLoadBalancer: an error page of the load
// balancer has no node header of the platform's, but names the server.
func TestFailureNamesTheServerFromTheLoadBalancer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(haproxyd.ServerHeader, "node-2")
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	load := traffic.Start(context.Background(), traffic.Options{URL: srv.URL, Workers: 1, Pause: time.Millisecond, MaxRequests: 5})
	require.Eventually(t, func() bool { return len(load.Samples()) == 5 }, 10*time.Second, 10*time.Millisecond)
	for _, s := range load.Stop() {
		assert.False(t, s.OK())
		assert.Equal(t, "node-2", s.Node)
	}
}
