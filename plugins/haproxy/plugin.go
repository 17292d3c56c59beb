package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
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
}}

// newPlugin declares the plugin. Each call returns a fresh instance: one
// *sdk.Plugin serves one configured load balancer.
func newPlugin() *sdk.Plugin {
	h := &handler{}
	kind := schema.KindLoadBalancer
	return &sdk.Plugin{
		Name:      "haproxy",
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
	socket, backend, stateFile := str("socket"), str("backend"), str("state_file")
	switch {
	case socket == "":
		return sdk.ArgError("socket", "the admin socket path is empty")
	case backend == "":
		return sdk.ArgError("backend", "the backend name is empty")
	}
	if stateFile != "" && !filepath.IsAbs(stateFile) {
		return sdk.ArgError("state_file", "%q is not an absolute path (HAProxy resolves server-state-file on its own, not from upshift's directory)", stateFile)
	}
	timeout := 5 * time.Second
	if s := str("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return sdk.ArgError("timeout", "%q is not a positive duration (write it like \"5s\")", s)
		}
		timeout = d
	}
	// The socket is not dialled here: validate and plan configure plugins
	// while HAProxy may not be running; the first action reports it.
	h.mu.Lock()
	h.lb = NewLB(socket, backend, stateFile, timeout)
	h.mu.Unlock()
	return nil
}

func (h *handler) get() (*LB, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.lb == nil {
		return nil, errors.New("the haproxy plugin was not configured")
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

func (h *handler) drain(ctx context.Context, req *sdk.Request) (cty.Value, error) {
	lb, err := h.get()
	if err != nil {
		return cty.NilVal, err
	}
	timeout, err := req.Duration("timeout", 60*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	if timeout == 0 {
		return cty.NilVal, sdk.ArgError("timeout", "must be more than 0s")
	}
	min := req.Int("min_in_service", 1)
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
	timeout, err := req.Duration("timeout", 60*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	if timeout == 0 {
		return cty.NilVal, sdk.ArgError("timeout", "must be more than 0s")
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
