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

	"github.com/upshift-dev/upshift/internal/traffic"
)

// twoDatabases stands for the mixed-version window without affinity: a
// client without a session cookie is given one; writes land in "B" and
// are read back only by requests that carry a session cookie the server
// handed out on an odd request (an upgraded node), the others read "A",
// which never sees them.
func twoDatabases(t *testing.T) (*httptest.Server, func() (sessions int, cookieless int)) {
	t.Helper()
	var mu sync.Mutex
	b := map[string]bool{}
	sessions, cookieless, n := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		c, err := r.Cookie("sid")
		if err != nil {
			cookieless++
			sessions++
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: strings.Repeat("s", sessions)})
		}
		switch {
		case r.Method == http.MethodPost:
			var body struct{ ID string }
			_ = json.NewDecoder(r.Body).Decode(&body)
			b[body.ID] = true
			w.WriteHeader(http.StatusCreated)
		case strings.HasPrefix(r.URL.Path, "/items/"):
			id := strings.TrimPrefix(r.URL.Path, "/items/")
			// A session on "B" sees its writes; every other request is
			// served by "A".
			if err == nil && len(c.Value)%2 == 1 && b[id] {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() (int, int) { mu.Lock(); defer mu.Unlock(); return sessions, cookieless }
}

// TestSessionsCountReadYourWritesMisses: each worker keeps its cookies
// (one session each), reads back its own acknowledged writes, and a 404
// of one is a read-your-writes miss, counted among failed reads.
func TestSessionsCountReadYourWritesMisses(t *testing.T) {
	srv, counts := twoDatabases(t)
	load := traffic.Start(context.Background(), traffic.Options{URL: srv.URL, Workers: 4, SlowMS: 1, Pause: time.Millisecond, MaxRequests: 400})
	require.Eventually(t, func() bool { return len(load.Samples()) == 400 }, 20*time.Second, 10*time.Millisecond)
	samples := load.Stop()
	sessions, cookieless := counts()
	// The first listing has no jar; each worker's first request gets its
	// session, and no later request comes without one.
	assert.Equal(t, 1+4, sessions, "one session per worker (and the first listing)")
	assert.Equal(t, 1+4, cookieless)

	perSession := map[int]string{}
	misses := 0
	for _, s := range samples {
		if s.Kind != traffic.ReadOwn {
			assert.False(t, s.Miss)
			continue
		}
		if s.Miss {
			misses++
			assert.Equal(t, http.StatusNotFound, s.Status)
		}
		perSession[s.Session] = "reads its own writes"
	}
	sum := traffic.Summarize(samples, nil, time.Time{})
	assert.Len(t, perSession, 4, "every session read back its own writes")
	assert.Equal(t, misses, sum.Misses)
	assert.Greater(t, sum.Misses, 10, "the sessions on A miss their writes")
	assert.Less(t, sum.Misses, sum.ReadOwn, "the sessions on B do not")
	assert.GreaterOrEqual(t, sum.ReadsFailed, sum.Misses, "misses are failed reads")
	assert.Contains(t, sum.String(), "read-your-writes misses: ")
}
