// Package lbkit owns what load_balancer plugins share: the Backend a vendor
// implements (drain, enable, status and their checks, in plain Go), and the
// SDK binding of the kind's standard actions to it: the plugin declaration,
// argument decoding and defaults (timeout 60s, min_in_service 1), the
// configured-instance guard ("not configured" before Configure), and the
// contract's results. HAProxy and nginx are written with it.
package lbkit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Server states and health, as the contract's ServerStatusType spells them.
const (
	StateReady = "ready"
	StateDrain = "drain"
	StateMaint = "maint"

	HealthUp      = "up"
	HealthDown    = "down"
	HealthUnknown = "unknown"
)

// Progress receives progress lines (printf style); nil drops them.
type Progress func(format string, args ...any)

// Printf sends a line, if there is anyone to send it to.
func (p Progress) Printf(format string, args ...any) {
	if p != nil {
		p(format, args...)
	}
}

// DrainArgs are drain's arguments, decoded and defaulted.
type DrainArgs struct {
	Server       string        `cty:"server"`
	Timeout      time.Duration `cty:"timeout,positive" default:"60s"`
	MinInService int           `cty:"min_in_service" default:"1"`
}

// EnableArgs are enable's arguments, decoded and defaulted.
type EnableArgs struct {
	Server  string        `cty:"server"`
	Timeout time.Duration `cty:"timeout,positive" default:"60s"`
}

// ServerResult is drain's and enable's result.
type ServerResult struct{ Server, State string }

// Server is one server as status reports it.
type Server struct {
	Name     string
	State    string // StateReady | StateDrain | StateMaint
	Health   string // HealthUp | HealthDown | HealthUnknown
	Sessions int    // 0 where the load balancer does not count them
}

// Counters are a load balancer's traffic counters, cumulative but for
// Sessions (see schema.CountersType).
type Counters struct {
	Requests         int64
	HTTP             [5]int64 // by status class: HTTP[0] is 1xx, HTTP[4] is 5xx
	ConnectionErrors int64
	ResponseErrors   int64
	Retries          int64
	Redispatches     int64
	Sessions         int64
}

// Add adds c2's counters to c's.
func (c *Counters) Add(c2 Counters) {
	c.Requests += c2.Requests
	for i := range c.HTTP {
		c.HTTP[i] += c2.HTTP[i]
	}
	c.ConnectionErrors += c2.ConnectionErrors
	c.ResponseErrors += c2.ResponseErrors
	c.Retries += c2.Retries
	c.Redispatches += c2.Redispatches
	c.Sessions += c2.Sessions
}

// ServerCounters are one server's counters.
type ServerCounters struct {
	Name string
	Counters
}

// Metrics are what the metrics action reports: the whole backend, and each
// server.
type Metrics struct {
	Backend Counters
	Servers []ServerCounters
}

// Backend is a vendor's load balancer logic. An error that blames an
// argument is an sdk.ArgError ("server", "min_in_service").
type Backend interface {
	Drain(ctx context.Context, a DrainArgs, progress Progress) (ServerResult, error)
	Enable(ctx context.Context, a EnableArgs, progress Progress) (ServerResult, error)
	Servers(ctx context.Context) ([]Server, error)
	// CheckDrain and CheckEnable report, without changing anything, whether
	// drain (enable) of server has taken effect, with a one-line detail.
	CheckDrain(ctx context.Context, server string) (bool, string, error)
	CheckEnable(ctx context.Context, server string) (bool, string, error)
	// Metrics reads the load balancer's own traffic counters. A vendor
	// that cannot count says, in the error, what the operator must enable.
	Metrics(ctx context.Context) (Metrics, error)
}

// Configure builds the Backend from the plugin's config (decode it with
// sdk.Decode). It should not contact the load balancer: validate and plan
// configure plugins where it may not run; the first action reports.
type Configure func(ctx context.Context, req plugins.ConfigureRequest) (Backend, error)

// Plugin declares a load_balancer plugin whose standard actions are served
// by the Backend configure returns. Each call returns a fresh instance: one
// *sdk.Plugin serves one configured load balancer.
func Plugin(name, version string, config *schema.Object, configure Configure) *sdk.Plugin {
	k := &kit{name: name}
	std := func(action string) *schema.Action { return schema.ContractAction(schema.KindLoadBalancer, action) }
	return &sdk.Plugin{
		Name:    name,
		Version: version,
		Kind:    schema.KindLoadBalancer,
		Config:  config,
		Configure: func(ctx context.Context, req plugins.ConfigureRequest) error {
			b, err := configure(ctx, req)
			if err != nil {
				return err
			}
			k.mu.Lock()
			k.b = b
			k.mu.Unlock()
			return nil
		},
		Actions: []*sdk.Action{
			{Schema: std("drain"), Run: k.drain, Check: k.check("drain", StateMaint, Backend.CheckDrain)},
			{Schema: std("enable"), Run: k.enable, Check: k.check("enable", StateReady, Backend.CheckEnable)},
			{Schema: std("status"), Run: k.status},
			{Schema: std("metrics"), Run: k.metrics},
			{Schema: std("preflight"), Run: k.preflight},
			{Schema: std("verify"), Run: k.verify},
		},
	}
}

// kit is one configured instance: the Backend, once Configure built it.
type kit struct {
	name string
	mu   sync.RWMutex
	b    Backend
}

func (k *kit) get() (Backend, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.b == nil {
		return nil, fmt.Errorf("the %s plugin was not configured", k.name)
	}
	return k.b, nil
}

// ServerResultValue is r as drain's or enable's result.
func ServerResultValue(action string, r ServerResult) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, action), map[string]cty.Value{
		"server": cty.StringVal(r.Server),
		"state":  cty.StringVal(r.State),
	})
}

func (k *kit) drain(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	var a DrainArgs
	if err := req.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	if a.MinInService < 0 {
		return cty.NilVal, sdk.ArgError("min_in_service", "must be 0 or more, not %d", a.MinInService)
	}
	res, err := b.Drain(ctx, a, req.Progress)
	if err != nil {
		return cty.NilVal, err
	}
	return ServerResultValue("drain", res)
}

func (k *kit) enable(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	var a EnableArgs
	if err := req.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	res, err := b.Enable(ctx, a, req.Progress)
	if err != nil {
		return cty.NilVal, err
	}
	return ServerResultValue("enable", res)
}

func (k *kit) status(ctx context.Context, _ *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	servers, err := b.Servers(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	list := make([]cty.Value, len(servers))
	for i, s := range servers {
		list[i] = cty.ObjectVal(map[string]cty.Value{
			"name":     cty.StringVal(s.Name),
			"state":    cty.StringVal(s.State),
			"health":   cty.StringVal(s.Health),
			"sessions": cty.NumberIntVal(int64(s.Sessions)),
		})
	}
	v := cty.ListValEmpty(schema.ServerStatusType)
	if len(list) > 0 {
		v = cty.ListVal(list)
	}
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, "status"), map[string]cty.Value{"servers": v})
}

func (k *kit) metrics(ctx context.Context, _ *sdk.Request) (cty.Value, error) {
	b, err := k.get()
	if err != nil {
		return cty.NilVal, err
	}
	m, err := b.Metrics(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	servers := make([]cty.Value, len(m.Servers))
	for i, s := range m.Servers {
		attrs := counterAttrs(s.Counters)
		attrs["name"] = cty.StringVal(s.Name)
		servers[i] = cty.ObjectVal(attrs)
	}
	list := cty.ListValEmpty(schema.ServerCountersType)
	if len(servers) > 0 {
		list = cty.ListVal(servers)
	}
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, "metrics"), map[string]cty.Value{
		"backend": cty.ObjectVal(counterAttrs(m.Backend)),
		"servers": list,
	})
}

func counterAttrs(c Counters) map[string]cty.Value {
	n := func(v int64) cty.Value { return cty.NumberIntVal(v) }
	return map[string]cty.Value{
		"requests": n(c.Requests),
		"http_1xx": n(c.HTTP[0]), "http_2xx": n(c.HTTP[1]), "http_3xx": n(c.HTTP[2]), "http_4xx": n(c.HTTP[3]), "http_5xx": n(c.HTTP[4]),
		"connection_errors": n(c.ConnectionErrors),
		"response_errors":   n(c.ResponseErrors),
		"retries":           n(c.Retries),
		"redispatches":      n(c.Redispatches),
		"sessions":          n(c.Sessions),
	}
}

// check answers Check for drain and enable: applied (with the result Run
// would return, the server in state) when probe says so.
func (k *kit) check(action, state string, probe func(Backend, context.Context, string) (bool, string, error)) func(context.Context, *sdk.Request) (plugins.CheckResponse, error) {
	return func(ctx context.Context, req *sdk.Request) (plugins.CheckResponse, error) {
		b, err := k.get()
		if err != nil {
			return plugins.CheckResponse{}, err
		}
		server := req.String("server")
		applied, detail, err := probe(b, ctx, server)
		if err != nil {
			return plugins.CheckResponse{}, err
		}
		if !applied {
			return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: detail}, nil
		}
		res, err := ServerResultValue(action, ServerResult{Server: server, State: state})
		if err != nil {
			return plugins.CheckResponse{}, fmt.Errorf("building the %s result: %w", action, err)
		}
		return plugins.CheckResponse{State: plugins.CheckApplied, Detail: detail, Result: res}, nil
	}
}
