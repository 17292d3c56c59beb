package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/testlab"
)

// load is the traffic both checks run: 6 workers for 3 s, half the
// requests on a 200 ms endpoint and a quarter 50 ms POSTs, so every backend
// holds requests in flight nearly all the time.
func (l *lab) load() testlab.Load {
	return testlab.Load{URL: l.inst.URL(), Workers: 6, Duration: 3 * time.Second, MaxRequests: 5000, SlowMS: 200}
}

// runUnderLoad starts the load, waits until s1 has minSlow slow requests
// in flight, runs op, and returns what the clients saw.
func runUnderLoad(t *testing.T, l *lab, minSlow int64, op func()) *testlab.LoadResult {
	t.Helper()
	results := make(chan *testlab.LoadResult, 1)
	go func() { results <- l.load().Run(context.Background()) }()
	time.Sleep(300 * time.Millisecond)
	require.Eventually(t, func() bool { return l.backends["s1"].SlowInFlight() >= minSlow }, 2*time.Second, time.Millisecond,
		"the load never had %d slow requests in flight on s1", minSlow)
	op()
	return <-results
}

// TestZeroDowntimeDrainStopStartEnable is the upgrade of one node under
// load: drain, stop the backend, start it again, enable, with the actions
// called over gRPC. No request fails.
func TestZeroDowntimeDrainStopStartEnable(t *testing.T) {
	l := startLab(t)
	p := l.provider(t, true)
	s1 := l.backends["s1"]
	var hitsAfterEnable int64
	res := runUnderLoad(t, l, 1, func() {
		resp, _ := call(t, p, "drain", map[string]cty.Value{"server": cty.StringVal("s1"), "timeout": cty.StringVal("10s")})
		require.NoError(t, resp.Diagnostics.Err())
		s1.Kill()
		time.Sleep(200 * time.Millisecond)
		s1.Restart(t)
		resp, _ = call(t, p, "enable", map[string]cty.Value{"server": cty.StringVal("s1"), "timeout": cty.StringVal("10s")})
		require.NoError(t, resp.Diagnostics.Err())
		hitsAfterEnable = s1.Hits()
	})
	t.Logf("drain/stop/start/enable under load: %s", res)
	assert.Zero(t, res.Failed, "failed requests: %v", res.Failures)
	assert.Greater(t, res.Total, int64(100), "the load was too light to show anything")
	assert.Greater(t, s1.Hits(), hitsAfterEnable, "s1 took no traffic after enable while the load ran")
}

// TestNegativeControlStopWithoutDrain proves the load can see a careless
// stop: the backend is killed with requests in flight, without drain.
func TestNegativeControlStopWithoutDrain(t *testing.T) {
	var last *testlab.LoadResult
	for attempt := 1; attempt <= 3; attempt++ {
		l := startLab(t)
		last = runUnderLoad(t, l, 2, func() { l.backends["s1"].Kill() })
		t.Logf("attempt %d, stop without drain under load: %s", attempt, last)
		if last.Failed > 0 {
			return
		}
	}
	t.Fatalf("stopping a backend without drain failed no request in 3 attempts: the load cannot see downtime (%s)", last)
}
