// A traffic guard's probes: URLs the guard requests itself, through the
// load balancer, every probe's `every`, from the rollout's first instance
// start until its end (the sampler's lifecycle: started and stopped with
// guard.loop). A request that fails (a status the probe does not expect, a
// connection error, a timeout) counts as an error of the guard's window,
// and every request as a request; a request cut short because the guard
// stopped counts as neither.

package runner

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/journal"
)

// probeState is what a probe has seen. Guarded by the guard's mu.
type probeState struct {
	cfg *playbooks.GuardProbe
	// name is the URL as messages and the journal show it, its password
	// (if any) replaced by xxxxx.
	name string
	// results are the requests of the last window, oldest first.
	results []probeResult
	// requests and failed count every request since the probe began.
	requests, failed int64
	lastError        string
}

type probeResult struct {
	at     time.Time
	failed bool
}

// runProbes runs each probe until ctx ends, and waits for them.
func (g *guard) runProbes(ctx context.Context) {
	var wg sync.WaitGroup
	for _, st := range g.probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.probe(ctx, st)
		}()
	}
	wg.Wait()
}

// probe requests its URL every period until ctx ends; each request is
// bounded by the probe's timeout.
func (g *guard) probe(ctx context.Context, st *probeState) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true // a fresh connection each time: nothing left open when the probe stops
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: st.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t := time.NewTicker(st.cfg.Every)
	defer t.Stop()
	for {
		g.probeOnce(ctx, client, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *guard) probeOnce(ctx context.Context, client *http.Client, st *probeState) {
	var failure string
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.cfg.URL, nil)
	if err != nil {
		failure = err.Error()
	} else {
		req.Header.Set("User-Agent", "upshift-guard-probe")
		resp, err := client.Do(req)
		switch {
		case err != nil:
			failure = err.Error()
		default:
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if !st.cfg.Succeeded(resp.StatusCode) {
				failure = "status " + resp.Status
			}
		}
	}
	if ctx.Err() != nil {
		return // stopped while asking: not a request of the rollout
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	st.requests++
	if failure != "" {
		st.failed++
		st.lastError = failure
	}
	st.results = append(st.results, probeResult{at: now, failed: failure != ""})
	st.prune(now, g.cfg.Window)
}

// prune drops the results older than the window. Caller holds mu.
func (st *probeState) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(st.results) && st.results[i].at.Before(now.Add(-window)) {
		i++
	}
	st.results = st.results[i:]
}

// ProbeWindow is one probe's requests over a guard's window.
type ProbeWindow struct {
	URL              string
	Requests, Failed int64
	// LastError is the probe's most recent failure, "" if none.
	LastError string
}

// probeWindow returns each probe's counts over the window ending now, and
// their sums. Caller holds mu.
func (g *guard) probeWindow(now time.Time) (out []ProbeWindow, requests, failed int64) {
	for _, st := range g.probes {
		st.prune(now, g.cfg.Window)
		w := ProbeWindow{URL: st.name, LastError: st.lastError}
		for _, r := range st.results {
			w.Requests++
			if r.failed {
				w.Failed++
			}
		}
		requests += w.Requests
		failed += w.Failed
		out = append(out, w)
	}
	return out, requests, failed
}

// probeCounts are the probes' cumulative counts, for the journal. Caller
// holds mu.
func (g *guard) probeCounts() []journal.ProbeCounts {
	var out []journal.ProbeCounts
	for _, st := range g.probes {
		out = append(out, journal.ProbeCounts{URL: st.name, Requests: st.requests, Failed: st.failed})
	}
	return out
}

// probesText says the probes' part of a trip: "probe http://lb/healthz: 4
// failed of 30 over 10s (last: status 503 Service Unavailable)".
func probesText(probes []ProbeWindow, window time.Duration) string {
	var parts []string
	for _, p := range probes {
		s := fmt.Sprintf("probe %s: %d failed of %d over %s", p.URL, p.Failed, p.Requests, window)
		if p.Failed > 0 && p.LastError != "" {
			s += " (last: " + p.LastError + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func newProbeState(p *playbooks.GuardProbe) *probeState {
	return &probeState{cfg: p, name: p.Redacted()}
}
