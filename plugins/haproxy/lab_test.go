package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/internal/testlab"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// lab is a real HAProxy in front of three tiny backends s1, s2, s3.
type lab struct {
	inst     *haproxyd.HAProxy
	backends map[string]*testlab.Backend
	client   *runtimeapi.Client
}

func startLab(t *testing.T) *lab {
	t.Helper()
	return startLabWith(t, haproxyd.Config{})
}

// startLabWith is startLab with cfg's settings (Servers and Dir are the
// lab's).
func startLabWith(t *testing.T, cfg haproxyd.Config) *lab {
	t.Helper()
	if !haproxyd.Available() {
		t.Skip("haproxy is not installed")
	}
	l := &lab{backends: map[string]*testlab.Backend{}}
	var servers []haproxyd.Server
	for i := 1; i <= 3; i++ {
		b := testlab.StartBackend(t, "s"+strconv.Itoa(i))
		l.backends[b.Name] = b
		servers = append(servers, haproxyd.Server{Name: b.Name, Addr: b.Addr})
	}
	cfg.Servers, cfg.Dir = servers, t.TempDir()
	inst, err := haproxyd.Start(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, inst.Stop()) })
	l.inst = inst
	l.client = inst.Client()
	for _, s := range []string{"s1", "s2", "s3"} {
		l.waitStatus(t, s, "UP")
	}
	return l
}

// lb returns the plugin logic for the lab, with or without a state file.
func (l *lab) lb(withStateFile bool) *LB {
	sf := ""
	if withStateFile {
		sf = l.inst.StateFile
	}
	return NewLB(l.inst.Socket, l.inst.Backend, sf, 2*time.Second)
}

func (l *lab) stat(t *testing.T, server string) runtimeapi.Stat {
	t.Helper()
	rows, _, err := l.client.Servers(context.Background(), l.inst.Backend)
	require.NoError(t, err)
	for _, r := range rows {
		if r["svname"] == server {
			return r
		}
	}
	t.Fatalf("no server %s", server)
	return nil
}

func (l *lab) waitStatus(t *testing.T, server, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return l.stat(t, server)["status"] == want }, 5*time.Second, 50*time.Millisecond,
		"server %s never became %s (is %s)", server, want, l.stat(t, server)["status"])
}

// get sends n GETs through HAProxy and requires each to succeed.
func (l *lab) get(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		resp, err := http.Get(l.inst.URL() + "/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

func (l *lab) hits() map[string]int64 {
	out := map[string]int64{}
	for n, b := range l.backends {
		out[n] = b.Hits()
	}
	return out
}

// slowRequest sends GET /slow?ms=ms through HAProxy and returns the server
// it landed on (the one whose sessions went to 1) and a channel that
// yields the response status once the request has finished.
func (l *lab) slowRequest(t *testing.T, ms int) (string, <-chan int) {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/slow?ms=%d", l.inst.URL(), ms))
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	var server string
	require.Eventually(t, func() bool {
		for name, b := range l.backends {
			if b.InFlight() > 0 {
				server = name
				return true
			}
		}
		return false
	}, 2*time.Second, 5*time.Millisecond, "slow request never reached a backend")
	return server, done
}

// progressLog collects progress lines.
type progressLog struct {
	mu    sync.Mutex
	lines []string
}

func (p *progressLog) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, fmt.Sprintf(format, args...))
}

func (p *progressLog) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}
