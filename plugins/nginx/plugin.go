package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxd"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the nginx plugin.
const Version = "0.1.0"

var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "nginx_conf", Type: cty.String, Required: true, Description: "nginx's main configuration file, which includes upstream_file; checked with `nginx -t` before every reload."},
	{Name: "upstream_file", Type: cty.String, Required: true, Description: "The file upshift manages: the upstream block, one `server ADDR; # NAME` line per server."},
	{Name: "upstream", Type: cty.String, Required: true, Description: "Name of the upstream block."},
	{Name: "pid_file", Type: cty.String, Required: true, Description: "nginx master's pid file."},
	{Name: "health_urls", Type: cty.Map(cty.String), Description: "Health URL of each server, by name: nginx (open source) has no active health checks, so enable and the min_in_service guard ask the servers themselves."},
	{Name: "nginx_binary", Type: cty.String, Description: "Path of nginx. Default: on PATH, else /usr/sbin/nginx."},
}}

func newPlugin() *sdk.Plugin {
	n := &lb{}
	k := schema.KindLoadBalancer
	return &sdk.Plugin{
		Name: "nginx", Version: Version, Kind: k, Config: configSchema, Configure: n.configure,
		Actions: []*sdk.Action{
			{Schema: schema.ContractAction(k, "drain"), Run: n.drain, Check: n.checkState(true)},
			{Schema: schema.ContractAction(k, "enable"), Run: n.enable, Check: n.checkState(false)},
			{Schema: schema.ContractAction(k, "status"), Run: n.status},
		},
	}
}

type lb struct {
	mu                            sync.Mutex // one change of the upstream file at a time
	conf, upstreamFile, name, pid string
	bin                           string
	health                        map[string]string
}

var client = &http.Client{Timeout: 2 * time.Second}

func (n *lb) configure(_ context.Context, req plugins.ConfigureRequest) error {
	c := req.Config
	n.conf, n.upstreamFile = c.GetAttr("nginx_conf").AsString(), c.GetAttr("upstream_file").AsString()
	n.name, n.pid = c.GetAttr("upstream").AsString(), c.GetAttr("pid_file").AsString()
	n.health = map[string]string{}
	if h := c.GetAttr("health_urls"); !h.IsNull() {
		for k, v := range h.AsValueMap() {
			n.health[k] = v.AsString()
		}
	}
	bin := ""
	if b := c.GetAttr("nginx_binary"); !b.IsNull() {
		bin = b.AsString()
	}
	var err error
	if n.bin, err = nginxd.Binary(bin); err != nil {
		return sdk.ArgError("nginx_binary", "%s", err)
	}
	return nil
}

func result(action string, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindLoadBalancer, action), attrs)
}

// find returns the servers and the index of the named one.
func (n *lb) find(server string) ([]nginxd.Server, int, error) {
	servers, err := nginxd.ReadUpstream(n.upstreamFile)
	if err != nil {
		return nil, -1, err
	}
	var names []string
	for i, s := range servers {
		if s.Name == server {
			return servers, i, nil
		}
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return nil, -1, sdk.ArgError("server", "no server named %q in upstream %s (servers: %v)", server, n.name, names)
}

func (n *lb) healthy(ctx context.Context, server string) (bool, string) {
	u, ok := n.health[server]
	if !ok {
		return true, "no health URL"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, resp.Status
}

// apply writes the upstream file with one server changed and reloads; a
// failed check or reload puts the old file back, so nothing changes.
func (n *lb) apply(ctx context.Context, servers []nginxd.Server, timeout time.Duration, progress func(string, ...any)) error {
	old, err := os.ReadFile(n.upstreamFile)
	if err != nil {
		return err
	}
	if err := nginxd.WriteUpstream(n.upstreamFile, n.name, servers); err != nil {
		return err
	}
	if err := nginxd.Test(ctx, n.bin, n.conf); err != nil {
		_ = os.WriteFile(n.upstreamFile, old, 0o644)
		return err
	}
	return nginxd.Reload(ctx, n.bin, n.conf, n.pid, timeout, progress)
}

func (n *lb) drain(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	server := r.String("server")
	timeout, err := r.Duration("timeout", 60*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	servers, i, err := n.find(server)
	if err != nil {
		return cty.NilVal, err
	}
	done := func() (cty.Value, error) {
		return result("drain", map[string]cty.Value{"server": cty.StringVal(server), "state": cty.StringVal("maint")})
	}
	if servers[i].Down {
		r.Progress("%s is already out of rotation", server)
		return done()
	}
	need := r.Int("min_in_service", 1)
	var serving []string
	for _, s := range servers {
		if s.Name == server || s.Down {
			continue
		}
		if ok, _ := n.healthy(ctx, s.Name); ok {
			serving = append(serving, s.Name)
		}
	}
	if len(serving) < need {
		return cty.NilVal, sdk.ArgError("min_in_service", "draining %s would leave %d servers in service (%v); %d required", server, len(serving), serving, need)
	}
	servers[i].Down = true
	r.Progress("marking %s down in %s and reloading nginx", server, n.upstreamFile)
	if err := n.apply(ctx, servers, timeout, r.Progress); err != nil {
		return cty.NilVal, fmt.Errorf("draining %s: %w", server, err)
	}
	return done()
}

func (n *lb) enable(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	server := r.String("server")
	timeout, err := r.Duration("timeout", 60*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	servers, i, err := n.find(server)
	if err != nil {
		return cty.NilVal, err
	}
	// nginx sends traffic as soon as the server is back in the file: it must
	// answer first.
	deadline := time.Now().Add(timeout)
	for {
		ok, why := n.healthy(ctx, server)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return cty.NilVal, fmt.Errorf("server %s is not healthy after %s (%s); left out of rotation", server, timeout, why)
		}
		r.Progress("waiting for %s to answer its health check: %s", server, why)
		time.Sleep(200 * time.Millisecond)
	}
	if servers[i].Down {
		servers[i].Down = false
		if err := n.apply(ctx, servers, timeout, r.Progress); err != nil {
			return cty.NilVal, fmt.Errorf("enabling %s: %w", server, err)
		}
	}
	return result("enable", map[string]cty.Value{"server": cty.StringVal(server), "state": cty.StringVal("ready")})
}

func (n *lb) checkState(wantDown bool) func(context.Context, *sdk.Request) (plugins.CheckResponse, error) {
	return func(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
		servers, i, err := n.find(r.String("server"))
		if err != nil {
			return plugins.CheckResponse{}, err
		}
		if servers[i].Down != wantDown {
			return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
		}
		state := map[bool]string{true: "maint", false: "ready"}[wantDown]
		res, err := result(r.Action, map[string]cty.Value{"server": cty.StringVal(servers[i].Name), "state": cty.StringVal(state)})
		return plugins.CheckResponse{State: plugins.CheckApplied, Result: res}, err
	}
}

func (n *lb) status(ctx context.Context, _ *sdk.Request) (cty.Value, error) {
	servers, err := nginxd.ReadUpstream(n.upstreamFile)
	if err != nil {
		return cty.NilVal, err
	}
	var out []cty.Value
	for _, s := range servers {
		health := "unknown"
		if _, ok := n.health[s.Name]; ok {
			if up, _ := n.healthy(ctx, s.Name); up {
				health = "up"
			} else {
				health = "down"
			}
		}
		out = append(out, cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(s.Name), "state": cty.StringVal(map[bool]string{true: "maint", false: "ready"}[s.Down]),
			"health": cty.StringVal(health), "sessions": cty.NumberIntVal(0), // open-source nginx does not count them per server
		}))
	}
	return result("status", map[string]cty.Value{"servers": cty.ListVal(out)})
}
