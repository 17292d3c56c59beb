package main

import (
	"context"
	"net"
	"net/url"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
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
	{Name: "health_urls", Type: cty.Map(cty.String), Sensitive: true, Description: "Health URL of each server, by name. nginx (open source) has no active health checks: enable and the min_in_service guard ask these URLs; a server without one counts as in service. Sensitive: a URL may carry credentials or a token."},
	{Name: "health_timeout", Type: cty.String, Description: "Deadline of each health probe, as a duration. Default 2s."},
	{Name: "nginx_binary", Type: cty.String, Description: "Path of nginx. Default: nginx on PATH, else /usr/sbin/nginx."},
	{Name: "access_log", Type: cty.String, Description: "Access log of the server that proxies to the upstream, written in the `upshift` log format (see the plugin's page): nginx open source keeps no traffic counters, so the metrics action counts requests from it. Without it, metrics says what to enable."},
}}

// newPlugin declares the plugin. Each call returns a fresh instance: one
// *sdk.Plugin serves one configured load balancer.
func newPlugin() *sdk.Plugin {
	return lbkit.Plugin("nginx", Version, configSchema, configure)
}

func configure(_ context.Context, req plugins.ConfigureRequest) (lbkit.Backend, error) {
	var o Options
	if err := sdk.Decode(req.Config, &o); err != nil {
		return nil, err
	}
	if err := checkOptions(o); err != nil {
		return nil, err
	}
	// Files and the master are not looked at here: validate and plan
	// configure plugins while nginx may not run; the first action reports.
	return NewLB(o), nil
}

// checkOptions refuses options nginx could not work with, blaming the attribute.
func checkOptions(o Options) error {
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
	if o.Binary != "" {
		if _, err := nginxctl.Binary(o.Binary); err != nil {
			return sdk.ArgError("nginx_binary", "%s", err)
		}
	}
	return nil
}

func isUnixAddr(a string) bool { return len(a) > len("unix:") && a[:5] == "unix:" }

func joinNames(m map[string]string) string { return strings.Join(sortedKeys(m), ", ") }
