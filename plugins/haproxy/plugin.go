package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the haproxy plugin.
const Version = "0.1.0"

// configSchema is the `config { ... }` block of a load_balancer using this
// plugin.
var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "socket", Type: cty.String, Required: true, Description: "Path of HAProxy's admin socket (`stats socket ... level admin`)."},
	{Name: "backend", Type: cty.String, Required: true, Description: "Name of the backend whose servers the playbook drains and enables."},
	{Name: "state_file", Type: cty.String, Description: "Path of HAProxy's server-state file (`server-state-file`). When set, the plugin writes `show servers state` to it after every change, so a reload keeps drained servers in maintenance."},
	{Name: "timeout", Type: cty.String, Description: "Deadline of each admin-socket command, as a duration. Default 5s."},
	{Name: "session_idle", Type: cty.String, Description: "With cookie persistence on, drain keeps a server's persistent sessions until it has taken no new session for this long (or the drain's timeout passes, when they are redispatched), as a duration. Default 5s."},
}}

// config is configSchema decoded.
type config struct {
	Socket    string        `cty:"socket"`
	Backend   string        `cty:"backend"`
	StateFile string        `cty:"state_file"`
	Timeout   time.Duration `cty:"timeout,positive" default:"5s"`
	// SessionIdle: see LB.sessionIdle.
	SessionIdle time.Duration `cty:"session_idle,positive" default:"5s"`
}

// newPlugin declares the plugin. Each call returns a fresh instance: one
// *sdk.Plugin serves one configured load balancer.
func newPlugin() *sdk.Plugin {
	return lbkit.Plugin("haproxy", Version, configSchema, configure)
}

func configure(_ context.Context, req plugins.ConfigureRequest) (lbkit.Backend, error) {
	var c config
	if err := sdk.Decode(req.Config, &c); err != nil {
		return nil, err
	}
	switch {
	case c.Socket == "":
		return nil, sdk.ArgError("socket", "the admin socket path is empty")
	case c.Backend == "":
		return nil, sdk.ArgError("backend", "the backend name is empty")
	}
	if c.StateFile != "" && !filepath.IsAbs(c.StateFile) {
		return nil, sdk.ArgError("state_file", "%q is not an absolute path (HAProxy resolves server-state-file on its own, not from upshift's directory)", c.StateFile)
	}
	// The socket is not dialled here: validate and plan configure plugins
	// while HAProxy may not be running; the first action reports it.
	lb := NewLB(c.Socket, c.Backend, c.StateFile, c.Timeout)
	lb.sessionIdle = c.SessionIdle
	return lb, nil
}
