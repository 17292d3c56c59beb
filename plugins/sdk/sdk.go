// Package sdk owns what a vendor plugin is written with: the Plugin and
// Action declarations, the Request an action's Run receives, argument and
// result helpers, ArgError, and the two ways to serve a plugin: Serve (the
// main of a plugin binary, over go-plugin and gRPC) and NewProvider (in
// process). It also holds the pieces both ends of the gRPC connection share
// (Handshake, PluginMap, GRPCPlugin, GRPCProvider), so the host and every
// plugin agree on them by construction.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"

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
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ArgError(name, "%q is not a duration (write it like \"60s\" or \"2m\")", s)
	}
	if d < 0 {
		return 0, ArgError(name, "duration %q is negative", s)
	}
	return d, nil
}

// Decode copies the arguments into the struct target points to, by the
// `cty:"name"` tags of its fields (gocty conversions). A null argument
// leaves the field at its zero value; arguments without a field are ignored;
// a tag naming no argument is an error (a typo in the plugin).
func (r *Request) Decode(target any) error {
	rv := reflect.ValueOf(target)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("Decode needs a pointer to a struct, not %T", target)
	}
	sv := rv.Elem()
	st := sv.Type()
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		tag := f.Tag.Get("cty")
		if tag == "" || !f.IsExported() {
			continue
		}
		if !r.Args.Type().IsObjectType() || !r.Args.Type().HasAttribute(tag) {
			return fmt.Errorf("field %s: action %s has no argument %q", f.Name, r.Action, tag)
		}
		v := r.Args.GetAttr(tag)
		if v.IsNull() {
			continue
		}
		if err := gocty.FromCtyValue(v, sv.Field(i).Addr().Interface()); err != nil {
			return ArgError(tag, "%s", err)
		}
	}
	return nil
}

// argError is an error that blames one argument.
type argError struct {
	attr string
	msg  string
}

func (e *argError) Error() string { return e.attr + ": " + e.msg }

// ArgError returns an error that becomes a Diagnostic with Attribute set to
// attr, so the host points at that argument's line in the playbook.
func ArgError(attr string, format string, args ...any) error {
	return &argError{attr: attr, msg: fmt.Sprintf(format, args...)}
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
	v, probs := conform(action.Result, in, false)
	if len(probs) > 0 {
		return cty.NilVal, fmt.Errorf("result of %s: %s", action.Name, joinProblems(probs))
	}
	return v, nil
}

// problem is one way a value misses its schema object.
type problem struct {
	attr string
	msg  string
}

func joinProblems(ps []problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		if p.attr != "" {
			parts[i] = p.attr + ": " + p.msg
		} else {
			parts[i] = p.msg
		}
	}
	return strings.Join(parts, "; ")
}

func (ps problemList) diagnostics(summary string) plugins.Diagnostics {
	var d plugins.Diagnostics
	for _, p := range ps {
		d = append(d, plugins.Diagnostic{Severity: plugins.Error, Summary: summary, Detail: p.msg, Attribute: p.attr})
	}
	return d
}

type problemList []problem

// conform converts v to o's implied type, attribute by attribute, so that
// each problem names its attribute. A null or NilVal v counts as an empty
// object. With needKnown, unknown values are problems (a call cannot run on
// a value nobody knows yet).
func conform(o *schema.Object, v cty.Value, needKnown bool) (cty.Value, problemList) {
	if v == cty.NilVal || v.IsNull() {
		v = cty.EmptyObjectVal
	}
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() {
		if needKnown {
			return cty.NilVal, problemList{{msg: "the value is not known yet"}}
		}
		return cty.UnknownVal(o.ImpliedType()), nil
	}
	ty := v.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		return cty.NilVal, problemList{{msg: fmt.Sprintf("an object is required, not %s", ty.FriendlyName())}}
	}
	in := v.AsValueMap()
	var probs problemList
	for name := range in {
		if o.Attribute(name) == nil && o.Block(name) == nil {
			probs = append(probs, problem{attr: name, msg: fmt.Sprintf("unsupported attribute %q", name)})
		}
	}
	out := map[string]cty.Value{}
	if o != nil {
		for _, a := range o.Attributes {
			av, ok := in[a.Name]
			if !ok || av.IsNull() {
				if a.Required {
					probs = append(probs, problem{attr: a.Name, msg: fmt.Sprintf("attribute %q is required", a.Name)})
				}
				out[a.Name] = cty.NullVal(a.Type)
				continue
			}
			if needKnown && !av.IsWhollyKnown() {
				probs = append(probs, problem{attr: a.Name, msg: "the value is not known yet"})
				continue
			}
			cv, err := convert.Convert(av, a.Type)
			if err != nil {
				probs = append(probs, problem{attr: a.Name, msg: fmt.Sprintf("wrong type: %s", err)})
				continue
			}
			out[a.Name] = cv
		}
		for _, b := range o.Blocks {
			v, ps := conformBlock(b, in[b.Name], needKnown)
			out[b.Name] = v
			probs = append(probs, ps...)
		}
	}
	if len(probs) > 0 {
		sortProblems(probs)
		return cty.NilVal, probs
	}
	if len(out) == 0 {
		return cty.EmptyObjectVal, nil
	}
	return cty.ObjectVal(out), nil
}

// conformBlock is conform for a nested block's value: an object (single)
// or a list of them, each conformed to the block's own object. Problems
// name the path, e.g. header[1].value.
func conformBlock(b *schema.Block, v cty.Value, needKnown bool) (cty.Value, problemList) {
	if v == cty.NilVal || v.IsNull() {
		var probs problemList
		if b.Required || b.MinItems > 0 {
			probs = append(probs, problem{attr: b.Name, msg: fmt.Sprintf("block %q is required", b.Name)})
		}
		if b.Nesting == schema.NestingList {
			return cty.ListValEmpty(b.Object.ImpliedType()), probs
		}
		return cty.NullVal(b.ImpliedType()), probs
	}
	prefix := func(ps problemList, p string) problemList {
		for i := range ps {
			if ps[i].attr == "" {
				ps[i].attr = p
			} else {
				ps[i].attr = p + "." + ps[i].attr
			}
		}
		return ps
	}
	if b.Nesting != schema.NestingList {
		ov, ps := conform(b.Object, v, needKnown)
		return ov, prefix(ps, b.Name)
	}
	uv, _ := v.Unmark()
	if !uv.IsKnown() {
		if needKnown {
			return cty.NilVal, problemList{{attr: b.Name, msg: "the value is not known yet"}}
		}
		return cty.UnknownVal(b.ImpliedType()), nil
	}
	ty := uv.Type()
	if !ty.IsListType() && !ty.IsTupleType() && !ty.IsSetType() {
		return cty.NilVal, problemList{{attr: b.Name, msg: fmt.Sprintf("a list of %q blocks is required, not %s", b.Name, ty.FriendlyName())}}
	}
	var elems []cty.Value
	var probs problemList
	i := 0
	for it := uv.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		ov, ps := conform(b.Object, ev, needKnown)
		probs = append(probs, prefix(ps, fmt.Sprintf("%s[%d]", b.Name, i))...)
		elems = append(elems, ov)
	}
	if i < b.MinItems || (b.MaxItems > 0 && i > b.MaxItems) {
		probs = append(probs, problem{attr: b.Name, msg: fmt.Sprintf("%d %q blocks given; %s", i, b.Name, itemRange(b))})
	}
	if len(probs) > 0 {
		return cty.NilVal, probs
	}
	if len(elems) == 0 {
		return cty.ListValEmpty(b.Object.ImpliedType()), nil
	}
	return cty.ListVal(elems), nil
}

func itemRange(b *schema.Block) string {
	switch {
	case b.MaxItems > 0 && b.MinItems == b.MaxItems:
		return fmt.Sprintf("exactly %d allowed", b.MinItems)
	case b.MaxItems > 0:
		return fmt.Sprintf("between %d and %d allowed", b.MinItems, b.MaxItems)
	default:
		return fmt.Sprintf("at least %d required", b.MinItems)
	}
}

func sortProblems(ps problemList) {
	// Small lists: insertion sort keeps this dependency free and stable.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].attr < ps[j-1].attr; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// diagnosticsFromError turns an action's error into diagnostics; an
// ArgError keeps its attribute.
func diagnosticsFromError(action string, err error) plugins.Diagnostics {
	if err == nil {
		return nil
	}
	var ae *argError
	if errors.As(err, &ae) {
		return plugins.Diagnostics{{Severity: plugins.Error, Summary: fmt.Sprintf("%s: invalid argument %q", action, ae.attr), Detail: ae.msg, Attribute: ae.attr}}
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
