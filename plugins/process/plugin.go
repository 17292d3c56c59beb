package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the process plugin.
const Version = "0.1.0"

var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "read_only_path", Type: cty.String, Description: "Path of the platform's read-only admin endpoint, used for nodes without read_only_url. Default /admin/read-only."},
	{Name: "start_timeout", Type: cty.String, Description: "Default deadline for a node to listen after start. Default 30s."},
	{Name: "stop_timeout", Type: cty.String, Description: "Default grace period between SIGTERM and SIGKILL. Default 30s."},
}}

func newPlugin() *sdk.Plugin {
	h := &handler{}
	k := schema.KindNodePool
	a := func(name string, run func(context.Context, *sdk.Request) (cty.Value, error)) *sdk.Action {
		return &sdk.Action{Schema: schema.ContractAction(k, name), Run: run}
	}
	start, stop := a("start", h.start), a("stop", h.stop)
	start.Check, stop.Check = h.checkRunning(true), h.checkRunning(false)
	return &sdk.Plugin{
		Name: "process", Version: Version, Kind: k, Config: configSchema, Configure: h.configure,
		Actions: []*sdk.Action{
			start, stop,
			a("exec", h.exec), a("set_config", h.setConfig), a("touch", h.touch),
			a("read_only", h.readOnly), a("wait_healthy", h.waitHealthy), a("backup_data", h.backupData),
		},
	}
}

type handler struct {
	mu           sync.Mutex
	nodes        map[string]*localnode.Node
	startTimeout time.Duration
	stopTimeout  time.Duration
	// locks serialise actions on one node: start and stop must not race.
	locks map[string]*sync.Mutex
}

func (h *handler) configure(_ context.Context, req plugins.ConfigureRequest) error {
	str := localnode.Attr
	dur := func(name string, def time.Duration) (time.Duration, error) {
		s := str(req.Config, name)
		if s == "" {
			return def, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, sdk.ArgError(name, "%q is not a positive duration", s)
		}
		return d, nil
	}
	var err error
	if h.startTimeout, err = dur("start_timeout", 30*time.Second); err != nil {
		return err
	}
	if h.stopTimeout, err = dur("stop_timeout", 30*time.Second); err != nil {
		return err
	}
	roPath := str(req.Config, "read_only_path")
	if roPath == "" {
		roPath = "/admin/read-only"
	}
	nodes := req.Nodes
	if nodes.IsNull() || !(nodes.Type().IsListType() || nodes.Type().IsTupleType()) {
		return fmt.Errorf("a process node pool needs a list of nodes")
	}
	h.nodes, h.locks = map[string]*localnode.Node{}, map[string]*sync.Mutex{}
	for it := nodes.ElementIterator(); it.Next(); {
		_, v := it.Element()
		n, err := localnode.FromValue(v, roPath)
		if err != nil {
			return err
		}
		for _, p := range []string{n.ConfigFile, n.DataDir, n.PidFile, n.LogFile} {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("node %q: path %q must be absolute", n.Name, p)
			}
		}
		h.nodes[n.Name] = n
		h.locks[n.Name] = &sync.Mutex{}
	}
	return nil
}

// node finds the node named by the `node` argument and locks it for the
// duration of the action.
func (h *handler) node(r *sdk.Request) (*localnode.Node, func(), error) {
	name := r.String("node")
	n := h.nodes[name]
	if n == nil {
		names := make([]string, 0, len(h.nodes))
		for k := range h.nodes {
			names = append(names, k)
		}
		return nil, nil, sdk.ArgError("node", "no node named %q in this pool (nodes: %v)", name, names)
	}
	l := h.locks[name]
	l.Lock()
	return n, l.Unlock, nil
}

func wrap(n *localnode.Node, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("node %s: %w", n.Name, err)
}

func (h *handler) start(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	timeout, err := r.Duration("timeout", h.startTimeout)
	if err != nil {
		return cty.NilVal, err
	}
	started, err := n.Start(ctx, timeout, r.Progress)
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	if !started {
		r.Progress("already running")
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)})
}

func (h *handler) stop(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	timeout, err := r.Duration("timeout", h.stopTimeout)
	if err != nil {
		return cty.NilVal, err
	}
	stopped, err := n.Stop(ctx, timeout, r.Progress)
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	if !stopped {
		r.Progress("already stopped")
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)})
}

// checkRunning answers Check for start (want running) and stop.
func (h *handler) checkRunning(want bool) func(context.Context, *sdk.Request) (plugins.CheckResponse, error) {
	return func(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
		n := h.nodes[r.String("node")]
		if n == nil {
			return plugins.CheckResponse{State: plugins.CheckUnknown}, nil
		}
		if n.Running() == want {
			res, err := result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)})
			return plugins.CheckResponse{State: plugins.CheckApplied, Result: res}, err
		}
		return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
	}
}

func (h *handler) exec(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	argv, shell, env, bad, err := localnode.ExecArgs(r.Args)
	if err != nil {
		return cty.NilVal, sdk.ArgError(bad, "%s", err)
	}
	timeout, err := r.Duration("timeout", 10*time.Minute)
	if err != nil {
		return cty.NilVal, err
	}
	res, err := n.Exec(ctx, argv, shell, env, timeout)
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	return result(r, map[string]cty.Value{
		"exit_code": cty.NumberIntVal(int64(res.ExitCode)), "stdout": cty.StringVal(res.Stdout), "stderr": cty.StringVal(res.Stderr),
	})
}

func (h *handler) setConfig(_ context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	changed, err := n.SetConfig(r.String("key"), r.String("value"))
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	return result(r, map[string]cty.Value{"changed": cty.BoolVal(changed)})
}

func (h *handler) touch(_ context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	p, err := n.Touch(r.String("path"))
	if err != nil {
		return cty.NilVal, sdk.ArgError("path", "node %s: %s", n.Name, err)
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(p)})
}

func (h *handler) readOnly(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	enabled := r.Bool("enabled", true)
	if err := n.SetReadOnly(ctx, enabled); err != nil {
		return cty.NilVal, wrap(n, err)
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name), "enabled": cty.BoolVal(enabled)})
}

func (h *handler) waitHealthy(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n := h.nodes[r.String("node")]
	if n == nil {
		_, _, err := h.node(r)
		return cty.NilVal, err
	}
	timeout, err := r.Duration("timeout", 2*time.Minute)
	if err != nil {
		return cty.NilVal, err
	}
	successes := r.Int("successes", 3)
	if successes < 1 {
		return cty.NilVal, sdk.ArgError("successes", "must be at least 1")
	}
	version, err := n.WaitHealthy(ctx, timeout, successes, r.Progress)
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name), "version": cty.StringVal(version)})
}

func (h *handler) backupData(_ context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	to := r.String("to")
	if !filepath.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "node %s: %q must be an absolute path", n.Name, to)
	}
	nb, err := n.BackupData(to)
	if err != nil {
		return cty.NilVal, wrap(n, err)
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(nb)})
}

// result builds the result of r's (standard) action.
func result(r *sdk.Request, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindNodePool, r.Action), attrs)
}
