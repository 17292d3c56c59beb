// What an instance's expressions see (its each and the steps it refers
// to, results not known yet being unknown values of the right type), and
// decoding its with and when against them, for the plan and for the run.

package runner

import (
	"fmt"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

// ResultFunc returns the result of a finished instance, or false when it
// has none yet (during plan, every result is still unknown). A nil
// ResultFunc is one that has none for any instance: what a plan passes.
type ResultFunc func(inst *StepInstance) (cty.Value, bool)

// resultOf is results(t), nil results having none.
func resultOf(results ResultFunc, t *StepInstance) (cty.Value, bool) {
	if results == nil {
		return cty.NilVal, false
	}
	return results(t)
}

// Scope builds what inst's expressions can see: its each, and the values of
// exactly the steps it refers to. A result not known yet is an unknown value
// of the action's result type, so types are still checked.
func (g *Graph) Scope(inst *StepInstance, results ResultFunc) *playbooks.Scope {
	scope := &playbooks.Scope{Each: inst.Each}
	if len(inst.Step.References) > 0 {
		scope.Steps = make(map[string]cty.Value, len(inst.Step.References))
	}
	for _, ref := range inst.Step.References {
		target := g.Playbook.Step(ref.Name)
		if target == nil || scope.Steps[ref.Name] != cty.NilVal {
			continue
		}
		stepValue := func(t *StepInstance) cty.Value {
			if res, ok := resultOf(results, t); ok {
				return cty.ObjectVal(map[string]cty.Value{"result": markSensitive(res, target.Run.Action.Result)})
			}
			return g.pending(target)
		}
		instances := g.ByStep[ref.Name]
		switch {
		case target.Rollout != nil && target.Rollout == inst.Step.Rollout:
			// A sibling in the same rollout: this item's own instance.
			if t := g.sibling(inst, ref.Name); t != nil {
				scope.Steps[ref.Name] = stepValue(t)
			}
		case len(instances) == 1 && !instances[0].Keyed:
			scope.Steps[ref.Name] = stepValue(instances[0])
		case len(instances) == 0:
			scope.Steps[ref.Name] = cty.EmptyObjectVal
		default:
			var byKey map[string]cty.Value
			for i, t := range instances {
				if _, ok := resultOf(results, t); ok && byKey == nil {
					byKey = make(map[string]cty.Value, len(instances))
					for _, p := range instances[:i] {
						byKey[p.Key] = g.pending(target)
					}
				}
				if byKey != nil {
					byKey[t.Key] = stepValue(t)
				}
			}
			if byKey == nil {
				// Nothing finished yet (always so in a plan): the same
				// object for every instance that refers to the step.
				scope.Steps[ref.Name] = g.allPending(target, instances)
			} else {
				scope.Steps[ref.Name] = cty.ObjectVal(byKey)
			}
		}
	}
	return scope
}

// evalContext is what inst's expressions are evaluated in. A step that
// refers to no other step sees only its each, which a rollout item's
// instances share, so they share one context too: building 11,000 contexts
// for a 1,000-node plan cost a quarter of the time.
func (g *Graph) evalContext(inst *StepInstance, results ResultFunc) *hcl.EvalContext {
	if len(inst.Step.References) > 0 && results == nil {
		// Nothing has finished, so every instance of the step sees the
		// same steps (each one pending): that object is made once per
		// step, not once for each of 10,000 instances.
		child := g.Playbook.EvalContext(nil).NewChild()
		child.Variables = map[string]cty.Value{"step": g.pendingScope(inst)}
		if inst.Each != cty.NilVal {
			child.Variables["each"] = inst.Each
		}
		return child
	}
	if len(inst.Step.References) > 0 || inst.env == nil {
		return g.Playbook.EvalContext(g.Scope(inst, results))
	}
	inst.env.once.Do(func() { inst.env.ctx = g.Playbook.EvalContext(&playbooks.Scope{Each: inst.Each}) })
	return inst.env.ctx
}

// itemEnv is the evaluation context the instances of one rollout item
// share, made on first use.
type itemEnv struct {
	once sync.Once
	ctx  *hcl.EvalContext
}

// pendingScope is the `step` object inst's expressions see while no
// instance has finished: the same for every instance of inst's step (a
// sibling in a rollout item is pending like any other), so it is made once.
func (g *Graph) pendingScope(inst *StepInstance) cty.Value {
	g.pendingMu.Lock()
	v, ok := g.pendingScopes[inst.Step]
	g.pendingMu.Unlock()
	if ok {
		return v
	}
	v = cty.EmptyObjectVal
	if steps := g.Scope(inst, nil).Steps; len(steps) > 0 {
		v = cty.ObjectVal(steps)
	}
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	if g.pendingScopes == nil {
		g.pendingScopes = map[*playbooks.Step]cty.Value{}
	}
	g.pendingScopes[inst.Step] = v
	return v
}

// pending is what a step instance that has not finished looks like to an
// expression: {result = <unknown of the result type>}, sensitive parts
// marked. It depends only on the step, so it is made once.
func (g *Graph) pending(s *playbooks.Step) cty.Value {
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	if v, ok := g.pendingVals[s]; ok {
		return v
	}
	if g.pendingVals == nil {
		g.pendingVals = map[*playbooks.Step]cty.Value{}
	}
	res := s.Run.Action.Result
	v := cty.ObjectVal(map[string]cty.Value{"result": markSensitive(unknownResult(res), res)})
	g.pendingVals[s] = v
	return v
}

// allPending is a keyed step none of whose instances has finished:
// {key = pending, ...}, made once per step rather than once per instance
// that refers to it (1,000 instances each reading a 1,000-key object).
func (g *Graph) allPending(s *playbooks.Step, instances []*StepInstance) cty.Value {
	p := g.pending(s)
	g.pendingMu.Lock()
	defer g.pendingMu.Unlock()
	if v, ok := g.allPendingVals[s]; ok {
		return v
	}
	if g.allPendingVals == nil {
		g.allPendingVals = map[*playbooks.Step]cty.Value{}
	}
	byKey := make(map[string]cty.Value, len(instances))
	for _, t := range instances {
		byKey[t.Key] = p
	}
	v := cty.ObjectVal(byKey)
	g.allPendingVals[s] = v
	return v
}

// unknownResult is a result not known yet: an object whose attributes are
// unknown values of their types, so that sensitive ones can carry the mark.
func unknownResult(o *schema.Object) cty.Value {
	if o == nil || len(o.Attributes) == 0 {
		return cty.EmptyObjectVal
	}
	attrs := make(map[string]cty.Value, len(o.Attributes))
	for _, a := range o.Attributes {
		attrs[a.Name] = cty.UnknownVal(a.Type)
	}
	return cty.ObjectVal(attrs)
}

// markSensitive marks the attributes the schema calls sensitive, so that
// whatever an expression builds from them is shown as (sensitive).
func markSensitive(v cty.Value, o *schema.Object) cty.Value {
	if !o.HasSensitive() || v.IsNull() || !v.Type().IsObjectType() {
		return v
	}
	attrs := v.AsValueMap()
	for _, a := range o.Attributes {
		if av, ok := attrs[a.Name]; ok && a.Sensitive {
			attrs[a.Name] = av.Mark(playbooks.SensitiveMark)
		}
	}
	return cty.ObjectVal(attrs)
}

// DecodeArgs decodes inst's `with` body against its action's argument
// schema: an unknown argument, a wrong type or a missing required one is a
// diagnostic pointing into the body.
func (g *Graph) DecodeArgs(inst *StepInstance, results ResultFunc) (cty.Value, hcl.Diagnostics) {
	s := inst.Step
	w := g.withBody(s)
	if w.diags.HasErrors() {
		return cty.NilVal, w.diags
	}
	var attrs []*schema.Attribute
	if args := s.Run.Action.Args; args != nil {
		attrs = args.Attributes
		if len(args.Blocks) > 0 {
			// Nested blocks: hcldec decodes them, and the body, whole.
			body := s.With
			if body == nil {
				body = hcl.EmptyBody()
			}
			v, diags := hcldec.Decode(body, w.spec, g.evalContext(inst, results))
			if diags.HasErrors() {
				return cty.NilVal, pointAtStep(s, diags)
			}
			return v, nil
		}
	}
	if len(attrs) == 0 {
		return cty.EmptyObjectVal, nil
	}
	ctx := g.evalContext(inst, results)
	vals := make(map[string]cty.Value, len(attrs))
	var diags hcl.Diagnostics
	for _, a := range attrs {
		v, ds := decodeArg(w.content, a, ctx)
		vals[a.Name] = v
		diags = append(diags, ds...)
	}
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return cty.ObjectVal(vals), nil
}

// withBody is a step's `with` body checked against its action's arguments.
// Every instance of a step shares the body, so which arguments are written,
// misspelt or missing is the same for all of them and is worked out once;
// only the values differ. (Checking it per instance was a third of the
// time to plan 1,000 nodes.)
type withBody struct {
	spec    hcldec.Spec
	content *hcl.BodyContent
	diags   hcl.Diagnostics
}

func (g *Graph) withBody(s *playbooks.Step) *withBody {
	g.withMu.Lock()
	defer g.withMu.Unlock()
	if w, ok := g.withs[s]; ok {
		return w
	}
	body := s.With
	if body == nil {
		body = hcl.EmptyBody()
	}
	spec := s.Run.Action.Args.DecoderSpec()
	content, diags := body.Content(hcldec.ImpliedSchema(spec))
	pointAtStep(s, diags)
	w := &withBody{spec: spec, content: content, diags: diags}
	if g.withs == nil {
		g.withs = map[*playbooks.Step]*withBody{}
	}
	g.withs[s] = w
	return w
}

// pointAtStep gives a diagnostic that points nowhere (a missing required
// argument or block in a step without a with block) the step's own range,
// and names the action whose schema asked for it.
func pointAtStep(s *playbooks.Step, diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil || d.Subject.Filename == "" {
			d.Subject = s.DeclRange.Ptr()
			d.Detail = fmt.Sprintf("%s (action %s)", d.Detail, s.Run)
		}
	}
	return diags
}

// decodeArg evaluates one argument and converts it to its schema type, as
// hcldec's AttrSpec does (same diagnostic), from content already checked.
func decodeArg(content *hcl.BodyContent, a *schema.Attribute, ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	attr, ok := content.Attributes[a.Name]
	if !ok {
		return cty.NullVal(a.Type.WithoutOptionalAttributesDeep()), nil
	}
	val, diags := attr.Expr.Value(ctx)
	conv, err := convertArg(val, a.Type)
	if err != nil {
		return cty.UnknownVal(a.Type.WithoutOptionalAttributesDeep()), append(diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     "Incorrect attribute value type",
			Detail:      fmt.Sprintf("Inappropriate value for attribute %q: %s.", a.Name, err.Error()),
			Subject:     attr.Expr.Range().Ptr(),
			Context:     hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
			Expression:  attr.Expr,
			EvalContext: ctx,
		})
	}
	return conv, diags
}

// convertArg converts an argument's value to its schema type. A tuple
// (what `[for n in var.nodes : n.name]` makes) bound for a list of a
// known element type is converted element by element: cty's own
// conversion first unifies the element types by sorting them, which for
// 10,000 node names cost seconds of CPU per argument. Anything else, or
// an element that does not convert (for cty's message), or a tuple not
// wholly known or with a marked part, goes to cty. Those are checked element
// by element, a string at a time: cty's deep walks of the whole tuple cost
// more than the conversion.
func convertArg(v cty.Value, ty cty.Type) (cty.Value, error) {
	if !ty.IsListType() || ty.ElementType() == cty.DynamicPseudoType || !v.Type().IsTupleType() ||
		v.IsMarked() || !v.IsKnown() || v.IsNull() || v.LengthInt() == 0 {
		return convert.Convert(v, ty)
	}
	elems := make([]cty.Value, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type().IsPrimitiveType() && (!e.IsKnown() || e.IsMarked()) ||
			!e.Type().IsPrimitiveType() && (!e.IsWhollyKnown() || e.ContainsMarked()) {
			return convert.Convert(v, ty)
		}
		c, err := convert.Convert(e, ty.ElementType())
		if err != nil {
			return convert.Convert(v, ty)
		}
		elems = append(elems, c)
	}
	return cty.ListVal(elems), nil
}

// EvalWhen evaluates inst's `when`: true when unset.
func (g *Graph) EvalWhen(inst *StepInstance, results ResultFunc) (cty.Value, hcl.Diagnostics) {
	if inst.Step.When == nil {
		return cty.True, nil
	}
	v, diags := inst.Step.When.Value(g.evalContext(inst, results))
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	v, _ = v.Unmark()
	if v.Type() != cty.Bool && v.Type() != cty.DynamicPseudoType || v.IsNull() {
		return cty.NilVal, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid when", Detail: "when must be true or false.", Subject: inst.Step.When.Range().Ptr()}}
	}
	return v, nil
}
