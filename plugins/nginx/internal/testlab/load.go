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

// Load is a bounded load: Workers clients, each sending in turn a slow GET,
// a POST, a fast GET and another slow GET, until Duration has passed or
// MaxRequests have been sent in all.
type Load struct {
	URL         string
	Workers     int
	Duration    time.Duration
	MaxRequests int64
	SlowMS      int           // duration of GET /slow; default 200
	PostMS      int           // duration of POST /write; default 200
	Pause       time.Duration // between a worker's requests; default 5ms
}

// LoadResult counts what the clients saw.
type LoadResult struct {
	Total, Failed     int64
	Slow, Fast, Posts int64
	// Failures holds up to 10 descriptions of failed requests.
	Failures []string
}

func (r *LoadResult) String() string {
	return fmt.Sprintf("%d requests (%d slow GET, %d fast GET, %d POST), %d failed %v", r.Total, r.Slow, r.Fast, r.Posts, r.Failed, r.Failures)
}

// Run sends the load and returns when it is done. A request fails when it
// errors or answers other than 200 (201 for POST).
func (l Load) Run(ctx context.Context) *LoadResult {
	if l.SlowMS == 0 {
		l.SlowMS = 200
	}
	if l.PostMS == 0 {
		l.PostMS = 200
	}
	if l.Pause == 0 {
		l.Pause = 5 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	// A new connection per request, as from many users: a kept-alive
	// client connection stays on one nginx worker, which a reload lets
	// finish, and it would hide what a fresh connection meets.
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true, Proxy: nil}
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
				case 0, 3:
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/slow?ms=%d", l.URL, l.SlowMS), nil)
					atomic.AddInt64(&res.Slow, 1)
				case 1:
					req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/write?ms=%d", l.URL, l.PostMS), strings.NewReader(fmt.Sprintf("worker %d request %d", w, i)))
					want = http.StatusCreated
					atomic.AddInt64(&res.Posts, 1)
				default:
					req, _ = http.NewRequest(http.MethodGet, l.URL+"/", nil)
					atomic.AddInt64(&res.Fast, 1)
				}
				// Not tied to ctx: a request in flight when the duration
				// ends is finished, not cancelled and miscounted.
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
