// Package testlab holds what the load-balancer plugins' tests put behind a
// real HAProxy or nginx: tiny HTTP backends on loopback that can be made
// unhealthy, stopped gracefully, killed mid-request and restarted on the
// same port, and a bounded load that opens a new connection per request and
// keeps slow GETs and POSTs in flight on every backend.
package testlab

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Backend is one tiny HTTP server: GET /healthz (200, or 503 when made
// unhealthy), GET /slow?ms=N (answers after N ms), POST /write?ms=N (reads
// the body, answers 201 after N ms), GET /status/NNN (answers status NNN),
// anything else answers 200 with the backend's name.
type Backend struct {
	Name string
	Addr string

	hits     atomic.Int64 // requests other than health checks
	inflight atomic.Int64
	slow     atomic.Int64 // /slow requests in flight
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

func (b *Backend) serve(ln net.Listener) {
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
		case strings.HasPrefix(r.URL.Path, "/status/"):
			code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
			if err != nil || code < 100 || code > 599 {
				code = http.StatusBadRequest
			}
			http.Error(w, b.Name, code)
		case r.URL.Path == "/slow":
			b.slow.Add(1)
			defer b.slow.Add(-1)
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "%s slow %d\n", b.Name, ms)
		case r.Method == http.MethodPost:
			b.posts.Add(1)
			defer b.posts.Add(-1)
			n, _ := io.Copy(io.Discard, r.Body)
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "%s wrote %d\n", b.Name, n)
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

func (b *Backend) server() *http.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

// Hits counts the requests served other than health checks.
func (b *Backend) Hits() int64 { return b.hits.Load() }

// InFlight counts the requests being served right now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// SlowInFlight counts the /slow requests being served right now.
func (b *Backend) SlowInFlight() int64 { return b.slow.Load() }

// PostsInFlight counts the POSTs being served right now: nginx does not
// replay a POST it has sent, so these are the requests a crash shows.
func (b *Backend) PostsInFlight() int64 { return b.posts.Load() }

// HealthURL is the backend's health URL.
func (b *Backend) HealthURL() string { return "http://" + b.Addr + "/healthz" }

// SetHealthy makes /healthz answer 200 (true) or 503 (false).
func (b *Backend) SetHealthy(ok bool) { b.sick.Store(!ok) }

// Kill closes the listener and every connection at once, in-flight requests
// included: a crash, as seen from HAProxy.
func (b *Backend) Kill() {
	if s := b.server(); s != nil {
		_ = s.Close()
	}
}

// Restart listens again on the same address (after Kill).
func (b *Backend) Restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; a brief retry covers TIME_WAIT quirks.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", b.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err, "restarting backend %s on %s", b.Name, b.Addr)
	b.serve(ln)
}
