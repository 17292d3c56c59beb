// Package testlab holds what the nginx plugin's tests put behind a real
// nginx: tiny HTTP backends on loopback that can be made unhealthy, killed
// mid-request and restarted on the same port, and a bounded load that opens
// a new connection per request and keeps slow GETs and POSTs in flight on
// every backend.
package testlab

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Backend is one tiny HTTP server: GET /healthz (200, or 503 when made
// unhealthy), GET /slow?ms=N (answers 200 after N ms), POST /write?ms=N
// (reads the body, answers 201 after N ms), anything else 200 with the
// backend's name. Health checks are not counted as hits.
type Backend struct {
	Name string
	Addr string

	hits     atomic.Int64
	inflight atomic.Int64
	posts    atomic.Int64 // POSTs in flight
	sick     atomic.Bool

	mu  sync.Mutex
	srv *http.Server
}

// StartBackend starts a backend on a free loopback port; t.Cleanup kills it.
func StartBackend(t testing.TB, name string) *Backend {
	t.Helper()
	b := &Backend{Name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.Addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.Kill)
	return b
}

// HealthURL is the backend's health URL.
func (b *Backend) HealthURL() string { return "http://" + b.Addr + "/healthz" }

func (b *Backend) serve(ln net.Listener) {
	wait := func(r *http.Request) bool {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return true
		case <-r.Context().Done():
			return false
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if b.sick.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.inflight.Add(1)
		defer b.inflight.Add(-1)
		switch {
		case r.Method == http.MethodPost:
			b.posts.Add(1)
			defer b.posts.Add(-1)
			n, _ := io.Copy(io.Discard, r.Body)
			if !wait(r) {
				return
			}
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "%s wrote %d\n", b.Name, n)
		case r.URL.Path == "/slow":
			if !wait(r) {
				return
			}
			fmt.Fprintf(w, "%s slow\n", b.Name)
		default:
			fmt.Fprintln(w, b.Name)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Hits counts the requests served other than health checks.
func (b *Backend) Hits() int64 { return b.hits.Load() }

// InFlight counts the requests being served right now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// PostsInFlight counts the POSTs being served right now: nginx does not
// replay a POST it has sent, so these are the requests a crash shows.
func (b *Backend) PostsInFlight() int64 { return b.posts.Load() }

// SetHealthy makes /healthz answer 200 (true) or 503 (false).
func (b *Backend) SetHealthy(ok bool) { b.sick.Store(!ok) }

// Kill closes the listener and every connection at once, in-flight
// requests included: a crash, as nginx sees it.
func (b *Backend) Kill() {
	b.mu.Lock()
	s := b.srv
	b.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// Restart listens again on the same address (after Kill).
func (b *Backend) Restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", b.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err, "restarting backend %s on %s", b.Name, b.Addr)
	b.serve(ln)
}
