package testlab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load describes a bounded load: Workers clients, each sending requests in
// turn (two slow GETs, a fast GET, a POST of PostMS) until Duration has passed or MaxRequests have been sent in all.
type Load struct {
	URL         string
	Workers     int
	Duration    time.Duration
	MaxRequests int64
	SlowMS      int           // duration of /slow requests; default 200
	PostMS      int           // duration of POST /write; default SlowMS/4
	Pause       time.Duration // between a worker's requests; default 5ms
}

// LoadResult counts what the clients saw.
type LoadResult struct {
	Total, Failed int64
	Slow, Fast    int64
	Posts         int64
	// Failures holds up to 10 descriptions of failed requests.
	Failures []string
}

func (r *LoadResult) String() string {
	return fmt.Sprintf("%d requests (%d slow, %d fast, %d POST), %d failed %v", r.Total, r.Slow, r.Fast, r.Posts, r.Failed, r.Failures)
}

// Run sends the load and returns when it is done (or ctx ends). A request
// fails when it errors or answers other than 200 (201 for POST).
func (l Load) Run(ctx context.Context) *LoadResult {
	if l.SlowMS == 0 {
		l.SlowMS = 200
	}
	if l.PostMS == 0 {
		l.PostMS = l.SlowMS / 4
	}
	if l.Pause == 0 {
		l.Pause = 5 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	// One connection per request, as from many distinct users. With client
	// keep-alive HAProxy reuses idle server connections, and it silently
	// retries a request cut on a reused one: a careless stop then shows no
	// failure at all (measured: 0 in 3 attempts), and the check is blind.
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		res  LoadResult
		sent atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	fail := func(msg string) {
		atomic.AddInt64(&res.Failed, 1)
		mu.Lock()
		if len(res.Failures) < 10 {
			res.Failures = append(res.Failures, msg)
		}
		mu.Unlock()
	}
	for w := 0; w < l.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if l.MaxRequests > 0 && sent.Add(1) > l.MaxRequests {
					return
				}
				var req *http.Request
				want := http.StatusOK
				switch (w + i) % 4 {
				case 0, 1:
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/slow?ms=%d", l.URL, l.SlowMS), nil)
					atomic.AddInt64(&res.Slow, 1)
				case 2:
					req, _ = http.NewRequest(http.MethodGet, l.URL+"/", nil)
					atomic.AddInt64(&res.Fast, 1)
				default:
					req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/write?ms=%d", l.URL, l.PostMS), strings.NewReader(fmt.Sprintf("worker %d request %d", w, i)))
					want = http.StatusCreated
					atomic.AddInt64(&res.Posts, 1)
				}
				// Requests are not tied to ctx: one in flight when the
				// duration ends is finished, not cancelled and miscounted.
				atomic.AddInt64(&res.Total, 1)
				resp, err := client.Do(req)
				if err != nil {
					fail(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
				} else {
					_, rerr := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode != want:
						fail(fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
					case rerr != nil:
						fail(fmt.Sprintf("%s %s: reading the body: %v", req.Method, req.URL.Path, rerr))
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(l.Pause):
				}
			}
		}(w)
	}
	wg.Wait()
	return &res
}
