package lbkit

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Verify checks, from one Servers answer, the end state of a rollout:
// every one of want is in the backend, in rotation and not reported down.
// It returns the servers in service and every problem at once.
func Verify(servers []Server, want []string) (inService int, problems []string) {
	byName, names, inService := index(servers)
	for _, name := range want {
		s, ok := byName[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("server %q is not in the backend (its servers: %s)", name, strings.Join(names, ", ")))
		case s.State != StateReady:
			problems = append(problems, fmt.Sprintf("server %q is %s, not in rotation: it takes no traffic (enable it once it is healthy)", name, s.State))
		case s.Health == HealthDown:
			problems = append(problems, fmt.Sprintf("server %q is in rotation but its health check says down", name))
		}
	}
	return inService, problems
}

// index is servers by name, their names sorted, and how many are in
// service (in rotation and not reported down).
func index(servers []Server) (byName map[string]Server, names []string, inService int) {
	byName = map[string]Server{}
	for _, s := range servers {
		byName[s.Name] = s
		names = append(names, s.Name)
		if s.State == StateReady && s.Health != HealthDown {
			inService++
		}
	}
	sort.Strings(names)
	return byName, names, inService
}

func (k *kit) verify(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	var a struct {
		Servers []string `cty:"servers"`
	}
	if err := req.Decode(&a); err != nil {
		return cty.NilVal, err
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
	in, problems := Verify(servers, a.Servers)
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, "verify"), map[string]cty.Value{"in_service": cty.NumberIntVal(int64(in))})
}
