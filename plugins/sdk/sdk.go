// Package sdk owns what a vendor plugin is written with: the Plugin and
// Action declarations, the Request an action's Run receives, decoding of a
// config or arguments into a tagged struct (Decode), result helpers,
// argument errors with paths (ArgError, ArgErrorAt), and the two ways to
// serve a plugin: Serve (the main of a plugin binary, over go-plugin and
// gRPC) and NewProvider (in process). It also holds the pieces both ends of
// the gRPC connection share (Handshake, PluginMap, GRPCPlugin,
// GRPCProvider), so the host and every plugin agree on them by
// construction; both check values with schema.Conform. The vendor
// plumbing each kind repeats is in the kits beside it (lbkit, nodekit,
// dbkit), with fsutil (atomic file writes) and procfs (processes).
package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/schema"
)

// Plugin is what a vendor plugin author declares. One *Plugin value serves
// one configured instance.
type Plugin struct {
	Name    string      // "haproxy"
	Version string      // "0.1.0"
	Kind    schema.Kind // schema.KindLoadBalancer | KindDatabase | KindNodePool
	Config  *schema.Object
	// Node is, for a node_pool, what the plugin reads from each node object
	// (nodekit.NodeSchema), so that validate reports a node that Configure
	// would refuse. Optional.
	Node *schema.Object
	// Configure receives the config (conforming to Config) and, for a
	// node_pool, the node list. Optional.
	Configure func(ctx context.Context, req plugins.ConfigureRequest) error
	Actions   []*Action
}

// Action is one verb of a plugin: its schema and the code behind it. Run may
// be called concurrently for different steps; an action that shares state
// guards it itself.
type Action struct {
	// Schema is schema.ContractAction(kind, "drain") for a standard action,
	// or the vendor's own.
	Schema *schema.Action
	Run    func(ctx context.Context, req *Request) (cty.Value, error)
	// Check is optional: without it, Check reports CheckUnknown.
	Check func(ctx context.Context, req *Request) (plugins.CheckResponse, error)
}

// Request is one call of an action.
type Request struct {
	Action string
	// Args is an object conforming to the action's Schema.Args, optional
	// attributes null when unset.
	Args cty.Value
	// Logger goes to the host's run log. Never log sensitive arguments.
	Logger hclog.Logger

	progress func(line string)
}

// Progress sends a progress line to the host (and so to the operator).
// Safe to call from several goroutines; lines sent after Run returned are
// dropped.
func (r *Request) Progress(format string, args ...any) {
	if r.progress != nil {
		r.progress(fmt.Sprintf(format, args...))
	}
}

// attr returns the named argument, or a null when it is unset or unknown to
// the schema.
func (r *Request) attr(name string) cty.Value {
	if r.Args.IsNull() || !r.Args.IsKnown() || !r.Args.Type().IsObjectType() || !r.Args.Type().HasAttribute(name) {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return r.Args.GetAttr(name)
}

// String returns a string argument, "" when null.
func (r *Request) String(name string) string {
	v := r.attr(name)
	if v.IsNull() || !v.IsKnown() {
		return ""
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return ""
	}
	return s.AsString()
}

// Bool returns a bool argument, def when null.
func (r *Request) Bool(name string, def bool) bool {
	v := r.attr(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Bool {
		return def
	}
	return v.True()
}

// Int returns a number argument truncated to an int, def when null.
func (r *Request) Int(name string, def int) int {
	v := r.attr(name)
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return def
	}
	i, _ := v.AsBigFloat().Int64()
	return int(i)
}

// Duration parses a duration argument ("60s", "2m"); def when null. A value
// that does not parse, or a negative one, is an ArgError.
func (r *Request) Duration(name string, def time.Duration) (time.Duration, error) {
	s := r.String(name)
	if s == "" {
		return def, nil
	}
	return parseDuration(cty.GetAttrPath(name), s, false)
}

// Decode copies the arguments into the struct target points to, by the
// `cty:"name"` tags of its fields: see the package function Decode for the
// rules (defaults, durations, nested blocks). A bad value is an ArgError
// naming its path.
func (r *Request) Decode(target any) error {
	return decode(r.Args, target, "action "+r.Action+" has no argument")
}

// argError is an error that blames one argument, by its path.
type argError struct {
	path string // as schema.PathString renders it: "socket", "header[1].name"
	msg  string
}

func (e *argError) Error() string { return e.path + ": " + e.msg }

// ArgError returns an error that becomes a Diagnostic with Attribute set to
// attr, so the host points at that argument's line in the playbook.
func ArgError(attr string, format string, args ...any) error {
	return &argError{path: attr, msg: fmt.Sprintf(format, args...)}
}

// ArgErrorAt is ArgError for a nested argument: the path is rendered the
// way the SDK names the arguments it refuses itself, e.g.
// ArgErrorAt(cty.GetAttrPath("header").IndexInt(1).GetAttr("name"), ...)
// blames "header[1].name".
func ArgErrorAt(path cty.Path, format string, args ...any) error {
	return &argError{path: schema.PathString(path), msg: fmt.Sprintf(format, args...)}
}

// ArgPath returns the path of the argument err blames (through wrapping),
// and whether it blames one.
func ArgPath(err error) (string, bool) {
	var ae *argError
	if errors.As(err, &ae) {
		return ae.path, true
	}
	return "", false
}

// Result builds a result object of action.Result's implied type: missing
// optional attributes become null; a missing required one, an attribute the
// schema does not have, or a value of the wrong type is an error.
func Result(action *schema.Action, attrs map[string]cty.Value) (cty.Value, error) {
	if action == nil {
		return cty.NilVal, errors.New("Result: nil action")
	}
	var in cty.Value
	if len(attrs) == 0 {
		in = cty.EmptyObjectVal
	} else {
		in = cty.ObjectVal(attrs)
	}
	v, probs := schema.Conform(action.Result, in, false)
	if len(probs) > 0 {
		return cty.NilVal, fmt.Errorf("result of %s: %s", action.Name, probs.Error())
	}
	return v, nil
}

// problemDiagnostics turns schema.Conform's problems into diagnostics that
// name their paths.
func problemDiagnostics(ps schema.Problems, summary string) plugins.Diagnostics {
	var d plugins.Diagnostics
	for _, p := range ps {
		d = append(d, plugins.Diagnostic{Severity: plugins.Error, Summary: summary, Detail: p.Message, Attribute: p.Path})
	}
	return d
}

// diagnosticsFromError turns an action's error into diagnostics; an
// ArgError keeps its attribute.
func diagnosticsFromError(action string, err error) plugins.Diagnostics {
	if err == nil {
		return nil
	}
	var ae *argError
	if errors.As(err, &ae) {
		return plugins.Diagnostics{{Severity: plugins.Error, Summary: fmt.Sprintf("%s: invalid argument %q", action, ae.path), Detail: ae.msg, Attribute: ae.path}}
	}
	return plugins.Diagnostics{{Severity: plugins.Error, Summary: fmt.Sprintf("%s failed", action), Detail: err.Error()}}
}

// lineSink delivers progress lines to f until closed, serialised, so Run may
// report from several goroutines and a late line never races the result.
type lineSink struct {
	mu     sync.Mutex
	f      func(string)
	closed bool
}

func (s *lineSink) send(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && s.f != nil {
		s.f(line)
	}
}

func (s *lineSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
