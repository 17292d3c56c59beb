package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/internal/traffic"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// LBCount reads the lab's load balancer's own counters of the backend, as
// its plugin's metrics action does (HAProxy's `show stat`, nginx's access
// log in nginxctl.LogFormat), so that what the load balancer saw can be set
// beside what the traffic checker saw.
type LBCount struct {
	read  func(ctx context.Context) (lbkit.Counters, error)
	start lbkit.Counters
	// Source says where the counts come from, for the summary.
	Source string
}

// StartLBCount takes the load balancer's counters now; LBCount.Since
// returns what it counted after.
func (s *State) StartLBCount(ctx context.Context) (*LBCount, error) {
	c := &LBCount{}
	if s.LB == "nginx" {
		log := nginxctl.NewAccessLog(s.NginxCtl().AccessLog)
		c.Source = "nginx access log " + log.Path()
		c.read = func(context.Context) (lbkit.Counters, error) {
			b, _, err := log.Read()
			return b, err
		}
	} else {
		hc := runtimeapi.NewClient(s.HAProxyCtl().Socket, 2*time.Second)
		c.Source = "haproxy show stat, backend " + Backend
		c.read = func(ctx context.Context) (lbkit.Counters, error) {
			_, total, err := hc.Backend(ctx, Backend)
			if err == nil && total == nil {
				err = fmt.Errorf("haproxy has no backend %s", Backend)
			}
			return total.Counters(), err
		}
	}
	var err error
	c.start, err = c.read(ctx)
	return c, err
}

// Since returns the counters' growth since StartLBCount (Sessions: the
// current value). A load balancer counts a request just after it answered
// it (nginx writes its log line then): Since reads until two readings
// settleEvery apart agree, for at most settleFor, so that the last
// requests of a load just stopped are in.
func (c *LBCount) Since(ctx context.Context) (lbkit.Counters, error) {
	now, err := c.read(ctx)
	if err != nil {
		return lbkit.Counters{}, err
	}
	for deadline := time.Now().Add(settleFor); time.Now().Before(deadline); {
		time.Sleep(settleEvery)
		again, err := c.read(ctx)
		if err != nil {
			return lbkit.Counters{}, err
		}
		settled := again.Requests == now.Requests && again.HTTP == now.HTTP
		now = again
		if settled {
			break
		}
	}
	d := now
	d.Requests -= c.start.Requests
	for i := range d.HTTP {
		d.HTTP[i] -= c.start.HTTP[i]
	}
	d.ConnectionErrors -= c.start.ConnectionErrors
	d.ResponseErrors -= c.start.ResponseErrors
	d.Retries -= c.start.Retries
	d.Redispatches -= c.start.Redispatches
	return d, nil
}

// How Since waits for the load balancer's last counts.
const (
	settleEvery = 250 * time.Millisecond
	settleFor   = 5 * time.Second
)

// LBAgreement sets the load balancer's counts beside the traffic
// checker's.
type LBAgreement struct {
	Source string
	LB     lbkit.Counters
	// Failed is the requests the load balancer did not answer with a 2xx,
	// less the clean read-only refusals (a 503 the load balancer cannot
	// tell apart from another; the checker knows them by their header).
	Failed int64
	// CheckerRequests and CheckerFailed are the traffic checker's.
	CheckerRequests, CheckerFailed int64
}

// Agree compares lb, the load balancer's counts over the load, with the
// checker's summary of the same load.
func Agree(source string, lb lbkit.Counters, sum traffic.Summary) LBAgreement {
	return LBAgreement{Source: source, LB: lb, Failed: lb.Requests - lb.HTTP[1] - int64(sum.WritesReadOnly),
		CheckerRequests: int64(sum.Requests), CheckerFailed: int64(sum.Failed())}
}

// OK reports whether both saw the same requests and the same failures.
func (a LBAgreement) OK() bool {
	return a.LB.Requests == a.CheckerRequests && a.Failed == a.CheckerFailed
}

// String renders the comparison for a person.
func (a LBAgreement) String() string {
	var b strings.Builder
	c := a.LB
	fmt.Fprintf(&b, "load balancer (%s): %d requests, %d 2xx, %d 3xx, %d 4xx, %d 5xx; %d connection errors, %d response errors, %d redispatched\n",
		a.Source, c.Requests, c.HTTP[1], c.HTTP[2], c.HTTP[3], c.HTTP[4], c.ConnectionErrors, c.ResponseErrors, c.Redispatches)
	verdict := "they agree"
	if !a.OK() {
		verdict = "THEY DISAGREE"
	}
	fmt.Fprintf(&b, "failed requests: %d by the load balancer's count (not 2xx, less the clean read-only 503s), %d by the traffic checker's, of %d and %d requests: %s\n",
		a.Failed, a.CheckerFailed, c.Requests, a.CheckerRequests, verdict)
	return b.String()
}
