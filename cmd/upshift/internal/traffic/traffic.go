// Package traffic owns the demo's traffic check: a bounded load through the
// load balancer that keeps requests in flight on every node (slow reads and
// writes, a new connection per request so the load balancer cannot hide a
// cut connection by retrying it), a record of every response, and the
// verdict an operator cares about: failed reads, acknowledged writes that
// went missing, clean read-only refusals, latency.
package traffic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind of request.
type Kind string

// Request kinds.
const (
	SlowRead Kind = "slow_read"
	Read     Kind = "read"
	Write    Kind = "write"
)

// Sample is one request and how it ended.
type Sample struct {
	At       time.Time     `json:"at"`
	Kind     Kind          `json:"kind"`
	Status   int           `json:"status"` // 0: no response
	Err      string        `json:"err,omitempty"`
	Latency  time.Duration `json:"latency_ns"`
	Node     string        `json:"node,omitempty"`
	Version  string        `json:"version,omitempty"`
	ReadOnly bool          `json:"read_only,omitempty"` // a clean 503 refusal of a write
	ID       string        `json:"id,omitempty"`        // a write's id
}

// OK reports whether the request succeeded.
func (s Sample) OK() bool {
	if s.Kind == Write {
		return s.Status == http.StatusCreated
	}
	return s.Status == http.StatusOK
}

// Options tune a load.
type Options struct {
	URL     string        // the load balancer, http://host:port
	Workers int           // concurrent clients; default 8
	SlowMS  int           // duration of a slow read; default 300
	Pause   time.Duration // between a worker's requests; default 10ms
	// MaxRequests bounds the load whatever happens; default 200,000.
	MaxRequests int64
}

// Load is a running load.
type Load struct {
	opts    Options
	client  *http.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	count   atomic.Int64
	mu      sync.Mutex
	samples []Sample
	run     string
}

// Start starts the load; Stop ends it. ctx bounds it too.
func Start(ctx context.Context, opts Options) *Load {
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.SlowMS <= 0 {
		opts.SlowMS = 300
	}
	if opts.Pause <= 0 {
		opts.Pause = 10 * time.Millisecond
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = 200_000
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{opts: opts, cancel: cancel, run: fmt.Sprintf("t%d", time.Now().UnixNano()),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		}}
	for w := 0; w < opts.Workers; w++ {
		l.wg.Add(1)
		go l.worker(ctx, w)
	}
	return l
}

// Stop ends the load, waits for requests in flight, and returns every sample.
func (l *Load) Stop() []Sample {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]Sample(nil), l.samples...)
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func (l *Load) worker(ctx context.Context, w int) {
	defer l.wg.Done()
	for i := 0; ctx.Err() == nil && l.count.Add(1) <= l.opts.MaxRequests; i++ {
		var s Sample
		switch i % 4 {
		case 0, 1:
			s = l.do(Kind(SlowRead), http.MethodGet, fmt.Sprintf("/slow?ms=%d", l.opts.SlowMS), nil, "")
		case 2:
			s = l.do(Read, http.MethodGet, "/items?limit=5", nil, "")
		case 3:
			id := fmt.Sprintf("%s-w%d-%d", l.run, w, i)
			body, _ := json.Marshal(map[string]string{"id": id, "value": "written by the traffic check"})
			s = l.do(Write, http.MethodPost, "/items", body, id)
		}
		l.mu.Lock()
		l.samples = append(l.samples, s)
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(l.opts.Pause):
		}
	}
}

// do sends one request. It is not tied to the load's context: a request in
// flight when the load stops is finished, not cancelled, so that it counts.
func (l *Load) do(kind Kind, method, path string, body []byte, id string) Sample {
	s := Sample{At: time.Now(), Kind: kind, ID: id}
	req, _ := http.NewRequest(method, l.opts.URL+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	s.Latency = time.Since(s.At)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.Status = resp.StatusCode
	s.Node = resp.Header.Get("X-Platform-Node")
	s.Version = resp.Header.Get("X-Platform-Version")
	s.ReadOnly = resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Upshift-Read-Only") == "1"
	return s
}

// Missing reads every acknowledged write back through url and returns the
// ids not found (each tried a few times, so a node restarting is not
// counted as a loss).
func Missing(ctx context.Context, url string, samples []Sample) ([]string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var missing []string
	for _, s := range samples {
		if s.Kind != Write || !s.OK() {
			continue
		}
		found := false
		for try := 0; try < 5 && !found; try++ {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			resp, err := client.Get(url + "/items/" + s.ID)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					found = true
					continue
				case http.StatusNotFound:
					try = 5 // a definite answer
					continue
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !found {
			missing = append(missing, s.ID)
		}
	}
	return missing, nil
}

// Summary is the verdict of a load.
type Summary struct {
	Reads, ReadsFailed                        int
	WritesAcked, WritesReadOnly, WritesFailed int
	LostWrites                                int
	P50Before, P99Before                      time.Duration
	P50During, P99During                      time.Duration
	// Failures lists the first failed requests, for the operator.
	Failures []Sample
}

// Summarize computes the verdict; requests that started before `during`
// count as "before" for latency.
func Summarize(samples []Sample, lost []string, during time.Time) Summary {
	var s Summary
	var before, in []time.Duration
	for _, x := range samples {
		if x.Kind == Write {
			switch {
			case x.OK():
				s.WritesAcked++
			case x.ReadOnly:
				s.WritesReadOnly++
			default:
				s.WritesFailed++
				s.addFailure(x)
			}
		} else {
			s.Reads++
			if !x.OK() {
				s.ReadsFailed++
				s.addFailure(x)
			}
		}
		if x.Kind != SlowRead && x.OK() {
			if x.At.Before(during) {
				before = append(before, x.Latency)
			} else {
				in = append(in, x.Latency)
			}
		}
	}
	s.LostWrites = len(lost)
	s.P50Before, s.P99Before = percentile(before, 50), percentile(before, 99)
	s.P50During, s.P99During = percentile(in, 50), percentile(in, 99)
	return s
}

func (s *Summary) addFailure(x Sample) {
	if len(s.Failures) < 10 {
		s.Failures = append(s.Failures, x)
	}
}

// Clean reports whether the load saw no failure and lost nothing.
func (s Summary) Clean() bool {
	return s.ReadsFailed == 0 && s.WritesFailed == 0 && s.LostWrites == 0
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[(len(d)-1)*p/100]
}

// String renders the summary for a person.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reads:  %d sent, %d failed\n", s.Reads, s.ReadsFailed)
	fmt.Fprintf(&b, "writes: %d acknowledged, %d refused cleanly while read-only (503), %d failed otherwise\n", s.WritesAcked, s.WritesReadOnly, s.WritesFailed)
	fmt.Fprintf(&b, "acknowledged writes missing from the final database: %d\n", s.LostWrites)
	fmt.Fprintf(&b, "latency (fast requests): p50 %s / p99 %s before the upgrade, p50 %s / p99 %s during\n",
		s.P50Before.Round(100*time.Microsecond), s.P99Before.Round(100*time.Microsecond), s.P50During.Round(100*time.Microsecond), s.P99During.Round(100*time.Microsecond))
	for _, f := range s.Failures {
		what := f.Err
		if what == "" {
			what = fmt.Sprintf("HTTP %d", f.Status)
		}
		fmt.Fprintf(&b, "  failed: %s %s at %s: %s (node %s)\n", f.Kind, f.ID, f.At.Format("15:04:05.000"), what, f.Node)
	}
	return b.String()
}
