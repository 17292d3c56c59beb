package lab_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// TestAgreeSetsTheLoadBalancerBesideTheChecker: the load balancer's
// failed requests are its non-2xx answers less the clean read-only 503s
// the checker counted; both must see the same requests and failures.
func TestAgreeSetsTheLoadBalancerBesideTheChecker(t *testing.T) {
	sum := traffic.Summary{Requests: 100, Reads: 80, ReadsFailed: 2, WritesAcked: 10, WritesReadOnly: 7, WritesFailed: 1}
	lb := lbkit.Counters{Requests: 100, HTTP: [5]int64{0, 90, 0, 1, 9}}
	a := lab.Agree("haproxy show stat", lb, sum)
	assert.Equal(t, int64(3), a.Failed, "10 not 2xx, less 7 read-only refusals")
	assert.Equal(t, int64(3), a.CheckerFailed)
	assert.True(t, a.OK())
	assert.Contains(t, a.String(), "failed requests: 3 by the load balancer's count")
	assert.Contains(t, a.String(), "of 100 and 100 requests: they agree")

	lb.Requests, lb.HTTP[1] = 99, 89 // one request the load balancer did not count
	a = lab.Agree("nginx access log", lb, sum)
	assert.False(t, a.OK())
	assert.Contains(t, a.String(), "THEY DISAGREE")

	lb = lbkit.Counters{Requests: 100, HTTP: [5]int64{0, 91, 0, 0, 9}} // a 5xx the checker took for a success
	a = lab.Agree("haproxy show stat", lb, sum)
	assert.Equal(t, int64(2), a.Failed)
	assert.False(t, a.OK())
}
