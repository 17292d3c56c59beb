package nodekit_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

// TestHealthyForRestartsOnAFailedAnswer: with healthy_for, a node counts
// only once its answers have stayed good that long; a failed answer in
// between starts the time again.
func TestHealthyForRestartsOnAFailedAnswer(t *testing.T) {
	var mu sync.Mutex
	answers, failedAt := 0, time.Time{}
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		answers++
		if answers == 3 { // a flap after two good answers
			failedAt = time.Now()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok","version":"2"}`)
	}))
	defer health.Close()
	n, err := nodekit.FromValue(nodeValue(t.TempDir(), map[string]cty.Value{"health_url": cty.StringVal(health.URL + "/healthz")}), "/admin/read-only")
	require.NoError(t, err)

	var lines []string
	version, err := n.WaitHealthyFor(context.Background(), 10*time.Second, 1, nodekit.Want{HealthyFor: 700 * time.Millisecond}, func(f string, a ...any) {
		lines = append(lines, f)
	})
	done := time.Now()
	require.NoError(t, err)
	assert.Equal(t, "2", version)
	mu.Lock()
	defer mu.Unlock()
	require.False(t, failedAt.IsZero(), "the flap was seen: without healthy_for the first answer would have done")
	assert.GreaterOrEqual(t, done.Sub(failedAt), 700*time.Millisecond, "the time began again after the failed answer")
	assert.Contains(t, lines, "healthy; it must stay so for %s")
}

// TestWithoutHealthyForTheSuccessesAlone: without healthy_for, the
// successes alone decide, as before.
func TestWithoutHealthyForTheSuccessesAlone(t *testing.T) {
	var mu sync.Mutex
	answers := 0
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		answers++
		mu.Unlock()
		_, _ = io.WriteString(w, `{"status":"ok","version":"2"}`)
	}))
	defer health.Close()
	n, err := nodekit.FromValue(nodeValue(t.TempDir(), map[string]cty.Value{"health_url": cty.StringVal(health.URL + "/healthz")}), "/admin/read-only")
	require.NoError(t, err)
	_, err = n.WaitHealthyFor(context.Background(), 10*time.Second, 2, nodekit.Want{}, func(string, ...any) {})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 2, answers, "two successes asked, two answers taken")
}
