package lbkit

import (
	"context"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// PreflightArgs are preflight's arguments, decoded and defaulted.
type PreflightArgs struct {
	Servers      []string `cty:"servers"`
	MinInService int      `cty:"min_in_service" default:"1"`
	MaxParallel  int      `cty:"max_parallel" default:"1"`
}

// Pinger is implemented by a Backend whose Servers can answer without the
// load balancer itself (nginx's come from its upstream file and the
// servers' health URLs): preflight then asks Ping too, so that a load
// balancer that is not running is a problem before the run, not at its
// first drain.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Preflight checks, from one Servers answer, that a rollout over a.Servers
// can begin: every server known, up and in rotation, and max_parallel of
// them drained at once still leave min_in_service others in service. It
// returns every problem at once.
func Preflight(servers []Server, a PreflightArgs) (inService int, problems []string) {
	byName, names, inService := index(servers)
	// The rollout drains at most max_parallel of its own servers at once,
	// and only those in service now take anything out of service: a
	// rollout over one server with max_parallel 2 drains one.
	draining := map[string]bool{}
	for _, want := range a.Servers {
		s, ok := byName[want]
		if ok && s.State == StateReady && s.Health != HealthDown {
			draining[want] = true
		}
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("server %q is not in the backend (its servers: %s)", want, strings.Join(names, ", ")))
		case s.State != StateReady:
			problems = append(problems, fmt.Sprintf("server %q is %s, not in rotation: enable it (or find out why it is out) before the run", want, s.State))
		case s.Health == HealthDown:
			problems = append(problems, fmt.Sprintf("server %q is in rotation but its health check says down", want))
		}
	}
	drain := min(a.MaxParallel, len(draining))
	if left := inService - drain; left < a.MinInService {
		problems = append(problems, fmt.Sprintf("%d server(s) in service now: draining %d at a time would leave %d, fewer than min_in_service = %d", inService, drain, max(left, 0), a.MinInService))
	}
	return inService, problems
}

func (k *kit) preflight(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	var a PreflightArgs
	if err := req.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	if a.MinInService < 0 {
		return cty.NilVal, sdk.ArgError("min_in_service", "must be 0 or more, not %d", a.MinInService)
	}
	if a.MaxParallel < 1 {
		return cty.NilVal, sdk.ArgError("max_parallel", "must be 1 or more, not %d", a.MaxParallel)
	}
	if p, ok := b.(Pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return cty.NilVal, fmt.Errorf("the load balancer does not answer: %w", err)
		}
	}
	servers, err := b.Servers(ctx)
	if err != nil {
		return cty.NilVal, fmt.Errorf("the load balancer does not answer: %w", err)
	}
	in, problems := Preflight(servers, a)
	if r, ok := b.(AffinityReporter); ok {
		aff, err := r.Affinity(ctx)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("cannot tell whether session affinity is on: %v", err))
		case !aff.On:
			// A warning, not a problem: a cluster whose clients hold no
			// session state of their own may run without it.
			req.Progress("%s", AffinityWarning(aff))
		default:
			req.Progress("session affinity is on: %s", aff.How)
		}
	}
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, "preflight"), map[string]cty.Value{
		"servers": cty.NumberIntVal(int64(len(servers))), "in_service": cty.NumberIntVal(int64(in)),
	})
}
