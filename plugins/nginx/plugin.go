package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the nginx plugin.
const Version = "0.2.0"

// configSchema is the `config { ... }` block of a load_balancer using this
// plugin.
var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "nginx_conf", Type: cty.String, Required: true, Description: "nginx's main configuration file, which includes upstream_file; checked with `nginx -t -c` before every reload."},
	{Name: "upstream_file", Type: cty.String, Required: true, Description: "The file upshift edits: it holds the upstream block, one `server ADDR [PARAMS];` line per server; upshift only adds or removes `down`."},
	{Name: "upstream", Type: cty.String, Required: true, Description: "Name of the upstream block in upstream_file."},
	{Name: "pid_file", Type: cty.String, Required: true, Description: "nginx master's pid file: reloads are SIGHUP to that process."},
	{Name: "servers", Type: cty.Map(cty.String), Description: "Server name -> address exactly as written in the upstream block (nginx entries have no names). Default: the names in the `# NAME` comments upshift writes after each server line."},
	{Name: "health_urls", Type: cty.Map(cty.String), Description: "Health URL of each server, by name. nginx (open source) has no active health checks: enable and the min_in_service guard ask these URLs; a server without one counts as in service."},
	{Name: "health_timeout", Type: cty.String, Description: "Deadline of each health probe, as a duration. Default 2s."},
	{Name: "nginx_binary", Type: cty.String, Description: "Path of nginx. Default: nginx on PATH, else /usr/sbin/nginx."},
}}

// newPlugin declares the plugin. Each call returns a fresh instance: one
// *sdk.Plugin serves one configured load balancer.
func newPlugin() *sdk.Plugin {
	h := &handler{}
	kind := schema.KindLoadBalancer
	return &sdk.Plugin{
		Name:      "nginx",
		Version:   Version,
		Kind:      kind,
		Config:    configSchema,
		Configure: h.configure,
		Actions: []*sdk.Action{
			{Schema: schema.ContractAction(kind, "drain"), Run: h.drain, Check: h.checkDrain},
			{Schema: schema.ContractAction(kind, "enable"), Run: h.enable, Check: h.checkEnable},
			{Schema: schema.ContractAction(kind, "status"), Run: h.status},
		},
	}
}

// handler binds LB to the SDK: typed arguments in, cty results out.
type handler struct {
	mu sync.RWMutex
	lb *LB
}

func (h *handler) configure(_ context.Context, req plugins.ConfigureRequest) error {
	cfg := req.Config
	str := func(name string) string {
		v := cfg.GetAttr(name)
		if v.IsNull() {
			return ""
		}
		return v.AsString()
	}
	strMap := func(name string) map[string]string {
		v := cfg.GetAttr(name)
		if v.IsNull() {
			return nil
		}
		out := map[string]string{}
		for k, e := range v.AsValueMap() {
			if !e.IsNull() {
				out[k] = e.AsString()
			}
		}
		return out
	}
	o := Options{
		NginxConf: str("nginx_conf"), UpstreamFile: str("upstream_file"), Upstream: str("upstream"),
		PidFile: str("pid_file"), Binary: str("nginx_binary"),
		Servers: strMap("servers"), HealthURLs: strMap("health_urls"),
	}
	for _, a := range []struct{ attr, v string }{
		{"nginx_conf", o.NginxConf}, {"upstream_file", o.UpstreamFile}, {"upstream", o.Upstream}, {"pid_file", o.PidFile},
	} {
		if a.v == "" {
			return sdk.ArgError(a.attr, "is empty")
		}
	}
	if o.Servers != nil {
		if len(o.Servers) == 0 {
			return sdk.ArgError("servers", "names no server")
		}
		seen := map[string]string{}
		for _, name := range sortedKeys(o.Servers) {
			addr := o.Servers[name]
			if _, _, err := net.SplitHostPort(addr); err != nil && !isUnixAddr(addr) {
				return sdk.ArgError("servers", "server %s: %q is not an address as nginx writes it (HOST:PORT or unix:PATH)", name, addr)
			}
			if other, dup := seen[addr]; dup {
				return sdk.ArgError("servers", "servers %s and %s have the same address %s", other, name, addr)
			}
			seen[addr] = name
		}
	}
	for _, name := range sortedKeys(o.HealthURLs) {
		if o.Servers != nil {
			if _, ok := o.Servers[name]; !ok {
				return sdk.ArgError("health_urls", "health URL for %q, which is not in servers (%s)", name, joinNames(o.Servers))
			}
		}
		u, err := url.Parse(o.HealthURLs[name])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL itself is not repeated: it may hold credentials.
			return sdk.ArgError("health_urls", "server %s: the health URL is not an http:// or https:// URL", name)
		}
	}
	if s := str("health_timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return sdk.ArgError("health_timeout", "%q is not a positive duration (write it like \"2s\")", s)
		}
		o.HealthTimeout = d
	}
	if o.Binary != "" {
		if _, err := nginxctl.Binary(o.Binary); err != nil {
			return sdk.ArgError("nginx_binary", "%s", err)
		}
	}
	// Files and the master are not looked at here: validate and plan
	// configure plugins while nginx may not run; the first action reports.
	h.mu.Lock()
	h.lb = NewLB(o)
	h.mu.Unlock()
	return nil
}

func isUnixAddr(a string) bool { return len(a) > len("unix:") && a[:5] == "unix:" }

func joinNames(m map[string]string) string { return strings.Join(sortedKeys(m), ", ") }

func (h *handler) get() (*LB, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.lb == nil {
		return nil, errors.New("the nginx plugin was not configured")
	}
	return h.lb, nil
}

// vendorErr turns the logic's argument errors into the SDK's.
func vendorErr(err error) error {
	var ae *argError
	if errors.As(err, &ae) {
		return sdk.ArgError(ae.attr, "%s", ae.msg)
	}
	return err
}

func serverResult(action string, r ServerResult) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, action), map[string]cty.Value{
		"server": cty.StringVal(r.Server),
		"state":  cty.StringVal(r.State),
	})
}

func timeoutArg(req *sdk.Request) (time.Duration, error) {
	timeout, err := req.Duration("timeout", 60*time.Second)
	if err != nil {
		return 0, err
	}
	if timeout == 0 {
		return 0, sdk.ArgError("timeout", "must be more than 0s")
	}
	return timeout, nil
}

func (h *handler) drain(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	lb, err := h.get()
	if err != nil {
		return cty.NilVal, err
	}
	timeout, err := timeoutArg(req)
	if err != nil {
		return cty.NilVal, err
	}
	min := req.Int("min_in_service", 1)
	if min < 0 {
		return cty.NilVal, sdk.ArgError("min_in_service", "must be 0 or more")
	}
	res, err := lb.Drain(ctx, DrainArgs{Server: req.String("server"), Timeout: timeout, MinInService: min}, req.Progress)
	if err != nil {
		return cty.NilVal, vendorErr(err)
	}
	return serverResult("drain", res)
}

func (h *handler) enable(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	lb, err := h.get()
	if err != nil {
		return cty.NilVal, err
	}
	timeout, err := timeoutArg(req)
	if err != nil {
		return cty.NilVal, err
	}
	res, err := lb.Enable(ctx, EnableArgs{Server: req.String("server"), Timeout: timeout}, req.Progress)
	if err != nil {
		return cty.NilVal, vendorErr(err)
	}
	return serverResult("enable", res)
}

func (h *handler) status(ctx context.Context, _ *sdk.Request) (cty.Value, error) {
	lb, err := h.get()
	if err != nil {
		return cty.NilVal, err
	}
	servers, err := lb.Status(ctx)
	if err != nil {
		return cty.NilVal, vendorErr(err)
	}
	list := make([]cty.Value, len(servers))
	for i, s := range servers {
		list[i] = cty.ObjectVal(map[string]cty.Value{
			"name":   cty.StringVal(s.Name),
			"state":  cty.StringVal(s.State),
			"health": cty.StringVal(s.Health),
			// nginx (open source) does not count sessions per server.
			"sessions": cty.NumberIntVal(0),
		})
	}
	v := cty.ListValEmpty(schema.ServerStatusType)
	if len(list) > 0 {
		v = cty.ListVal(list)
	}
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, "status"), map[string]cty.Value{"servers": v})
}

func (h *handler) check(ctx context.Context, req *sdk.Request, action, state string,
	probe func(*LB, context.Context, string) (bool, string, error)) (plugins.CheckResponse, error) {
	lb, err := h.get()
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	server := req.String("server")
	applied, detail, err := probe(lb, ctx, server)
	if err != nil {
		return plugins.CheckResponse{}, vendorErr(err)
	}
	if !applied {
		return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: detail}, nil
	}
	res, err := serverResult(action, ServerResult{Server: server, State: state})
	if err != nil {
		return plugins.CheckResponse{}, fmt.Errorf("building the %s result: %w", action, err)
	}
	return plugins.CheckResponse{State: plugins.CheckApplied, Detail: detail, Result: res}, nil
}

func (h *handler) checkDrain(ctx context.Context, req *sdk.Request) (plugins.CheckResponse, error) {
	return h.check(ctx, req, "drain", stateMaint, (*LB).CheckDrain)
}

func (h *handler) checkEnable(ctx context.Context, req *sdk.Request) (plugins.CheckResponse, error) {
	return h.check(ctx, req, "enable", stateReady, (*LB).CheckEnable)
}
