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
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
)

// Kind of request.
type Kind string

// Request kinds.
const (
	// SlowRead is GET /slow?ms=N: it holds a request in flight on a node.
	SlowRead Kind = "slow_read"
	// Read is a fast read: GET /items/{id} of an id known to exist.
	Read Kind = "read"
	// Write is POST /items with a unique id.
	Write Kind = "write"
	// ReadOwn is GET /items/{id} of the id the same session's last
	// acknowledged write created: a 404 is a read-your-writes miss.
	ReadOwn Kind = "read_own"
)

// Sample is one request and how it ended.
type Sample struct {
	At       time.Time     `json:"at"`
	Kind     Kind          `json:"kind"`
	Status   int           `json:"status"` // 0: no response
	Err      string        `json:"err,omitempty"`
	Latency  time.Duration `json:"latency_ns"`
	Node     string        `json:"node,omitempty"`      // X-Platform-Node
	Version  string        `json:"version,omitempty"`   // X-Platform-Version
	ReadOnly bool          `json:"read_only,omitempty"` // a clean 503 refusal of a write
	ID       string        `json:"id,omitempty"`        // the item written or read
	Session  int           `json:"session"`             // the client (worker) that sent it
	// Miss marks a read-your-writes miss: a ReadOwn answered 404.
	Miss bool `json:"miss,omitempty"`
}

// OK reports whether the request succeeded: 201 for a write, 200 for a read.
func (s Sample) OK() bool {
	if s.Kind == Write {
		return s.Status == http.StatusCreated
	}
	return s.Status == http.StatusOK
}

// Options tune a load. Zero values get the defaults given per field.
type Options struct {
	URL     string        // the load balancer, http://host:port (loopback in tests and the lab)
	Workers int           // concurrent clients; default 8
	SlowMS  int           // duration of a slow read; default 300
	Pause   time.Duration // between a worker's requests; default 10ms
	// Duration bounds the load in time whatever happens; default 5m.
	Duration time.Duration
	// MaxRequests bounds the load in count whatever happens; default 200,000.
	MaxRequests int64
	// Timeout bounds one request; default 10s. A request that times out
	// is a failure.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.SlowMS <= 0 {
		o.SlowMS = 300
	}
	if o.Pause <= 0 {
		o.Pause = 10 * time.Millisecond
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Minute
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 200_000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return o
}

// Load is a running load.
type Load struct {
	opts   Options
	client *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	count  atomic.Int64
	run    string // prefix of this load's ids

	mu      sync.Mutex
	samples []Sample
	// known are ids every node can read: present before the load or
	// acknowledged by a node of the baseline version (the first version
	// seen). In a rolling upgrade those were written to database A before
	// it was made read-only and copied, so they are on A and B; a write
	// acknowledged by an upgraded node is on B only, which old nodes do not
	// serve, by design, so it is not read back until the end.
	known    []string
	baseline string
	next     int
}

// Start starts the load; Stop ends it. ctx and Options.Duration bound it too.
func Start(ctx context.Context, opts Options) *Load {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	l := &Load{opts: opts, cancel: cancel, run: fmt.Sprintf("t%d", time.Now().UnixNano()),
		client: &http.Client{
			Timeout: opts.Timeout,
			// A new connection per request: a kept-alive connection cut by
			// a dying node could be retried by the client and hide it.
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		}}
	l.learn(ctx)
	for w := 0; w < opts.Workers; w++ {
		l.wg.Add(1)
		go l.worker(ctx, w)
	}
	return l
}

// learn lists items already there, so fast reads have ids from the start.
func (l *Load) learn(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.opts.URL+"/items?limit=100", nil)
	if err != nil {
		return
	}
	// It is a request through the load balancer like the others: it is
	// recorded (and counts in MaxRequests), so that the load balancer's
	// count and the checker's agree.
	l.count.Add(1)
	s := Sample{At: time.Now(), Kind: Read}
	resp, err := l.client.Do(req)
	if err != nil {
		s.Latency, s.Err = time.Since(s.At), err.Error()
		l.record(s)
		return
	}
	defer resp.Body.Close()
	s.Latency = time.Since(s.At)
	s.answered(resp)
	l.record(s)
	var body struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.baseline = resp.Header.Get("X-Platform-Version")
	for _, it := range body.Items {
		l.known = append(l.known, it.ID)
	}
}

// Stop ends the load, waits for requests in flight, and returns every
// sample in the order the requests were sent.
func (l *Load) Stop() []Sample {
	l.cancel()
	l.wg.Wait()
	return l.Samples()
}

// Samples returns the samples recorded so far, in the order sent.
func (l *Load) Samples() []Sample {
	l.mu.Lock()
	out := append([]Sample(nil), l.samples...)
	l.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// worker is one session: a client with a cookie jar of its own, as a
// browser would be, so that a load balancer with session affinity keeps
// it on one node. Once the session has a write acknowledged, its fast
// reads read that write back, as a user reloading the page would.
func (l *Load) worker(ctx context.Context, w int) {
	defer l.wg.Done()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: l.client.Timeout, Transport: l.client.Transport, Jar: jar}
	own := ""
	for i := 0; ctx.Err() == nil && l.count.Add(1) <= l.opts.MaxRequests; i++ {
		var s Sample
		switch i % 4 {
		case 0, 1:
			s = l.do(client, SlowRead, http.MethodGet, fmt.Sprintf("/slow?ms=%d", l.opts.SlowMS), nil, "")
		case 2:
			if id := l.knownID(); own != "" {
				s = l.do(client, ReadOwn, http.MethodGet, "/items/"+url.PathEscape(own), nil, own)
				s.Miss = s.Status == http.StatusNotFound
			} else if id != "" {
				s = l.do(client, Read, http.MethodGet, "/items/"+url.PathEscape(id), nil, id)
			} else {
				s = l.do(client, Read, http.MethodGet, "/items?limit=5", nil, "")
			}
		case 3:
			id := fmt.Sprintf("%s-w%d-%d", l.run, w, i)
			body, _ := json.Marshal(map[string]string{"id": id, "value": "written by the traffic check"})
			s = l.do(client, Write, http.MethodPost, "/items", body, id)
			if s.OK() {
				own = id
			}
		}
		s.Session = w
		l.record(s)
		select {
		case <-ctx.Done():
		case <-time.After(l.opts.Pause):
		}
	}
}

func (l *Load) record(s Sample) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples = append(l.samples, s)
	if s.Kind == Write && s.OK() {
		if l.baseline == "" {
			l.baseline = s.Version
		}
		if s.Version == l.baseline {
			l.known = append(l.known, s.ID)
		}
	}
}

// knownID picks the known ids in turn; "" when none is known yet.
func (l *Load) knownID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.known) == 0 {
		return ""
	}
	l.next++
	return l.known[l.next%len(l.known)]
}

// do sends one request. It is not tied to the load's context: a request in
// flight when the load stops is finished, not cancelled, so that it counts.
func (l *Load) do(client *http.Client, kind Kind, method, path string, body []byte, id string) Sample {
	s := Sample{At: time.Now(), Kind: kind, ID: id}
	req, _ := http.NewRequest(method, l.opts.URL+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		s.Latency = time.Since(s.At)
		s.Err = err.Error()
		return s
	}
	// A body cut short is a failure too, not only a missing status.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.Latency = time.Since(s.At)
	s.answered(resp)
	if err != nil {
		s.Err = "reading the body: " + err.Error()
		s.Status = 0
	}
	return s
}

// answered fills in what a response says: status, node, version, and
// whether it is a clean read-only refusal.
func (s *Sample) answered(resp *http.Response) {
	s.Status = resp.StatusCode
	s.Node = resp.Header.Get("X-Platform-Node")
	if s.Node == "" {
		// The load balancer's own error pages name the server instead.
		s.Node = resp.Header.Get(haproxyd.ServerHeader)
	}
	s.Version = resp.Header.Get("X-Platform-Version")
	s.ReadOnly = resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Upshift-Read-Only") == "1"
}

// Missing reads every acknowledged write back through url and returns the
// ids not found. Each is tried up to five times: a node restarting is not a
// loss, nor is a 404 from a node of another version than the one that
// acknowledged the write (another database, during an upgrade); a 404 from
// a node of the same version is.
func Missing(ctx context.Context, url string, samples []Sample) ([]string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var missing []string
	for _, s := range samples {
		if s.Kind != Write || !s.OK() {
			continue
		}
		found, definite := false, false
		for try := 0; try < 5 && !found && !definite; try++ {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/items/"+s.ID, nil)
			if err != nil {
				return nil, err
			}
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				found = resp.StatusCode == http.StatusOK
				definite = resp.StatusCode == http.StatusNotFound && resp.Header.Get("X-Platform-Version") == s.Version
			}
			if !found && !definite {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if !found {
			missing = append(missing, s.ID)
		}
	}
	return missing, nil
}

// Summary is the verdict of a load.
type Summary struct {
	Requests                                  int
	Reads, ReadsFailed                        int // slow and fast reads
	SlowReads, FastReads                      int
	WritesAcked, WritesReadOnly, WritesFailed int
	LostWrites                                int
	// ReadOwn is the reads of a session's own acknowledged write, and
	// Misses those answered 404 (counted in ReadsFailed too): a client
	// that wrote through an upgraded node (database B) and read through
	// an old one (database A).
	ReadOwn, Misses int
	// Latency of successful fast requests (fast reads and writes): before
	// the upgrade (the warm-up) and during it.
	P50Before, P99Before time.Duration
	P50During, P99During time.Duration
	// Failures lists the first failed requests, for the operator.
	Failures []Sample
}

// Summarize computes the verdict; requests sent before `during` count as
// "before" for latency (a zero time: everything is "during").
func Summarize(samples []Sample, lost []string, during time.Time) Summary {
	var s Summary
	var before, in []time.Duration
	for _, x := range samples {
		s.Requests++
		switch x.Kind {
		case Write:
			switch {
			case x.OK():
				s.WritesAcked++
			case x.ReadOnly:
				s.WritesReadOnly++
			default:
				s.WritesFailed++
				s.addFailure(x)
			}
		default:
			s.Reads++
			if x.Kind == SlowRead {
				s.SlowReads++
			} else {
				s.FastReads++
			}
			if x.Kind == ReadOwn {
				s.ReadOwn++
			}
			if x.Miss {
				s.Misses++
			}
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

// Failed is every request that failed: reads, and writes neither
// acknowledged nor cleanly refused.
func (s Summary) Failed() int { return s.ReadsFailed + s.WritesFailed }

// Clean reports whether the load saw no failure and lost nothing.
func (s Summary) Clean() bool {
	return s.ReadsFailed == 0 && s.WritesFailed == 0 && s.LostWrites == 0
}

// percentile is the nearest-rank percentile of d (sorted in place).
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	rank := (len(d)*p + 99) / 100 // ceil(n*p/100): the smallest value with p% at or below it
	return d[max(rank, 1)-1]
}

// String renders the summary for a person.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reads:  %d sent, %d failed (%d slow, %d fast)\n", s.Reads, s.ReadsFailed, s.SlowReads, s.FastReads)
	fmt.Fprintf(&b, "writes: %d acknowledged, %d refused cleanly while read-only (503), %d failed otherwise\n", s.WritesAcked, s.WritesReadOnly, s.WritesFailed)
	fmt.Fprintf(&b, "acknowledged writes missing from the final database: %d\n", s.LostWrites)
	fmt.Fprintf(&b, "read-your-writes misses: %d of %d reads of a session's own acknowledged write answered 404 (counted in failed reads)\n", s.Misses, s.ReadOwn)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	fmt.Fprintf(&b, "latency (fast requests): p50 %s / p99 %s before the upgrade, p50 %s / p99 %s during\n",
		r(s.P50Before), r(s.P99Before), r(s.P50During), r(s.P99During))
	for _, f := range s.Failures {
		what := f.Err
		if what == "" {
			what = fmt.Sprintf("HTTP %d", f.Status)
		}
		node := f.Node
		if node == "" {
			node = "?"
		}
		fmt.Fprintf(&b, "  failed: %s %s at %s: %s (node %s)\n", f.Kind, f.ID, f.At.Format("15:04:05.000"), what, node)
	}
	return b.String()
}
