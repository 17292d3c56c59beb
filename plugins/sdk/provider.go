package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/schema"
)

// Validate reports a declaration that cannot be served: no name, an action
// without schema or Run, a name used twice, a standard action whose schema
// is not the contract's own (schema.ContractAction), or a schema that fails
// schema.PluginSchema.Validate, which includes the kind's whole contract.
func (p *Plugin) Validate() error {
	_, err := p.schema()
	return err
}

// schema builds and validates the description the plugin gives of itself.
func (p *Plugin) schema() (*schema.PluginSchema, error) {
	if p == nil {
		return nil, errors.New("nil plugin")
	}
	if p.Name == "" {
		return nil, errors.New("plugin has no name")
	}
	wrap := func(err error) error { return fmt.Errorf("plugin %s: %w", p.Name, err) }
	cfg := p.Config
	if cfg == nil {
		cfg = &schema.Object{}
	}
	sp := &schema.PluginSchema{Kind: p.Kind, Config: cfg, Node: p.Node, Actions: map[string]*schema.Action{}}
	for i, a := range p.Actions {
		switch {
		case a == nil || a.Schema == nil:
			return nil, wrap(fmt.Errorf("action #%d has no schema", i+1))
		case a.Schema.Name == "":
			return nil, wrap(fmt.Errorf("action #%d has no name", i+1))
		case a.Run == nil:
			return nil, wrap(fmt.Errorf("action %s has no Run", a.Schema.Name))
		case sp.Actions[a.Schema.Name] != nil:
			return nil, wrap(fmt.Errorf("action %s is declared twice", a.Schema.Name))
		}
		if std := schema.ContractAction(p.Kind, a.Schema.Name); std != nil && std != a.Schema {
			return nil, wrap(fmt.Errorf("standard action %s must use schema.ContractAction(%q, %q) as its schema, unchanged", a.Schema.Name, p.Kind, a.Schema.Name))
		}
		sp.Actions[a.Schema.Name] = a.Schema
	}
	if err := sp.Validate(); err != nil {
		return nil, wrap(err)
	}
	return sp, nil
}

// provider serves one *Plugin in process. It is what NewProvider returns and
// what the gRPC server adapts.
type provider struct {
	p       *Plugin
	schema  *schema.PluginSchema
	err     error // a declaration that failed Validate: every call reports it
	actions map[string]*Action
	logger  hclog.Logger
}

var _ plugins.Provider = (*provider)(nil)

// NewProvider returns p as an in-process provider (no gRPC), for unit tests
// and built-ins. A declaration that fails Validate yields a provider whose
// every call reports that error.
func NewProvider(p *Plugin) plugins.Provider {
	return newProvider(p, nil)
}

func newProvider(p *Plugin, logger hclog.Logger) *provider {
	sp, err := p.schema()
	if logger == nil {
		name := "plugin"
		if p != nil && p.Name != "" {
			name = p.Name
		}
		logger = hclog.L().Named(name)
	}
	pr := &provider{p: p, schema: sp, err: err, logger: logger, actions: map[string]*Action{}}
	if err == nil {
		for _, a := range p.Actions {
			pr.actions[a.Schema.Name] = a
		}
	}
	return pr
}

func (pr *provider) Schema(context.Context) (*schema.PluginSchema, error) {
	if pr.err != nil {
		return nil, pr.err
	}
	return pr.schema, nil
}

func (pr *provider) Configure(ctx context.Context, req plugins.ConfigureRequest) (diags plugins.Diagnostics) {
	if pr.err != nil {
		return plugins.FromError(pr.err)
	}
	cfg, probs := schema.Conform(pr.schema.Config, req.Config, true)
	if len(probs) > 0 {
		return problemDiagnostics(probs, "invalid plugin configuration")
	}
	nodes := req.Nodes
	if nodes == cty.NilVal {
		nodes = cty.NullVal(cty.DynamicPseudoType)
	}
	nodes, _ = nodes.UnmarkDeep()
	if pr.schema.Kind == schema.KindNodePool {
		if err := checkNodes(nodes); err != nil {
			return plugins.AttributeErrorf("nodes", "%s", err)
		}
	}
	if pr.p.Configure == nil {
		return nil
	}
	defer pr.recoverInto(&diags, "configure")
	if err := pr.p.Configure(ctx, plugins.ConfigureRequest{Config: cfg, Nodes: nodes}); err != nil {
		d := diagnosticsFromError("configure", err)
		d[0].Summary = "configuring the plugin failed"
		return d
	}
	return nil
}

// checkNodes verifies what upshift itself relies on: a list of objects, each
// with a string name.
func checkNodes(nodes cty.Value) error {
	if nodes.IsNull() || !nodes.IsKnown() {
		return errors.New("a node_pool needs its node list")
	}
	ty := nodes.Type()
	if !ty.IsListType() && !ty.IsTupleType() && !ty.IsSetType() {
		return fmt.Errorf("nodes must be a list of objects, not %s", ty.FriendlyName())
	}
	for it := nodes.ElementIterator(); it.Next(); {
		_, n := it.Element()
		if n.IsNull() || !n.Type().IsObjectType() || !n.Type().HasAttribute("name") {
			return errors.New("every node must be an object with a name")
		}
		name := n.GetAttr("name")
		if name.IsNull() || !name.IsKnown() || name.Type() != cty.String || name.AsString() == "" {
			return errors.New("every node needs a name (a non-empty string)")
		}
	}
	return nil
}

// request validates a call's arguments and builds its Request.
func (pr *provider) request(action string, args cty.Value) (*Action, *Request, plugins.Diagnostics) {
	if pr.err != nil {
		return nil, nil, plugins.FromError(pr.err)
	}
	a := pr.actions[action]
	if a == nil {
		return nil, nil, plugins.Errorf("plugin %s has no action %q", pr.p.Name, action)
	}
	v, probs := schema.Conform(a.Schema.Args, args, true)
	if len(probs) > 0 {
		return nil, nil, problemDiagnostics(probs, fmt.Sprintf("%s: invalid arguments", action))
	}
	return a, &Request{Action: action, Args: v, Logger: pr.logger.Named(action)}, nil
}

func (pr *provider) Invoke(ctx context.Context, req plugins.InvokeRequest) (resp plugins.InvokeResponse) {
	a, r, diags := pr.request(req.Action, req.Args)
	if diags != nil {
		return plugins.InvokeResponse{Diagnostics: diags}
	}
	sink := &lineSink{f: req.Progress}
	r.progress = sink.send
	defer sink.close()
	defer pr.recoverInto(&resp.Diagnostics, req.Action)

	result, err := a.Run(ctx, r)
	if err != nil {
		return plugins.InvokeResponse{Diagnostics: diagnosticsFromError(req.Action, err)}
	}
	return pr.result(a, result)
}

// result checks an action's result against its schema: a plugin that
// returns something else has a bug the host must not have to guess at.
func (pr *provider) result(a *Action, v cty.Value) plugins.InvokeResponse {
	out, probs := schema.Conform(a.Schema.Result, v, true)
	if len(probs) > 0 {
		return plugins.InvokeResponse{Diagnostics: plugins.Diagnostics{{
			Severity: plugins.Error,
			Summary:  fmt.Sprintf("plugin %s returned an invalid result for %s", pr.p.Name, a.Schema.Name),
			Detail:   probs.Error() + " (a bug in the plugin)",
		}}}
	}
	return plugins.InvokeResponse{Result: out}
}

func (pr *provider) Check(ctx context.Context, req plugins.InvokeRequest) (resp plugins.CheckResponse) {
	a, r, diags := pr.request(req.Action, req.Args)
	if diags != nil {
		return plugins.CheckResponse{State: plugins.CheckUnknown, Diagnostics: diags}
	}
	if a.Check == nil {
		return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: fmt.Sprintf("%s has no check", req.Action)}
	}
	sink := &lineSink{f: req.Progress}
	r.progress = sink.send
	defer sink.close()
	defer pr.recoverInto(&resp.Diagnostics, req.Action+" check")

	cr, err := a.Check(ctx, r)
	if err != nil {
		return plugins.CheckResponse{State: plugins.CheckUnknown, Diagnostics: append(cr.Diagnostics, diagnosticsFromError(req.Action+" check", err)...)}
	}
	if cr.State == plugins.CheckApplied {
		res := pr.result(a, cr.Result)
		if res.Diagnostics.HasErrors() {
			return plugins.CheckResponse{State: plugins.CheckUnknown, Diagnostics: append(cr.Diagnostics, res.Diagnostics...)}
		}
		cr.Result = res.Result
	} else {
		cr.Result = cty.NilVal
	}
	return cr
}

// recoverInto turns a panic in vendor code into an error diagnostic, so one
// bad call does not take the plugin (and every other step using it) down.
func (pr *provider) recoverInto(diags *plugins.Diagnostics, what string) {
	if r := recover(); r != nil {
		pr.logger.Error("panic in plugin", "call", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*diags = append(*diags, plugins.Diagnostic{
			Severity: plugins.Error,
			Summary:  fmt.Sprintf("plugin %s panicked in %s", pr.p.Name, what),
			Detail:   fmt.Sprint(r),
		})
	}
}

func (pr *provider) Close() error { return nil }
