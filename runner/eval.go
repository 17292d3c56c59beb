package runner

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

// ResultFunc returns the result of a finished instance, or false when it
// has none yet (during plan, every result is still unknown).
type ResultFunc func(inst *Instance) (cty.Value, bool)

// Scope builds what inst's expressions can see: its each, and the values of
// exactly the steps it refers to. A result not known yet is an unknown value
// of the action's result type, so types are still checked.
func (g *Graph) Scope(inst *Instance, results ResultFunc) *playbooks.Scope {
	scope := &playbooks.Scope{Each: inst.Each, Steps: map[string]cty.Value{}}
	for _, ref := range inst.Step.References {
		target := g.Playbook.Step(ref.Name)
		if target == nil || scope.Steps[ref.Name] != cty.NilVal {
			continue
		}
		resultSchema := target.Run.Action.Result
		stepValue := func(t *Instance) cty.Value {
			res, ok := results(t)
			if !ok {
				res = unknownResult(resultSchema)
			}
			return cty.ObjectVal(map[string]cty.Value{"result": markSensitive(res, resultSchema)})
		}
		instances := g.ByStep[ref.Name]
		switch {
		case target.Rollout != nil && target.Rollout == inst.Step.Rollout:
			// A sibling in the same rollout: this item's own instance.
			for _, t := range instances {
				if t.Key == inst.Key {
					scope.Steps[ref.Name] = stepValue(t)
				}
			}
		case len(instances) == 1 && !instances[0].Keyed:
			scope.Steps[ref.Name] = stepValue(instances[0])
		default:
			byKey := make(map[string]cty.Value, len(instances))
			for _, t := range instances {
				byKey[t.Key] = stepValue(t)
			}
			if len(byKey) == 0 {
				scope.Steps[ref.Name] = cty.EmptyObjectVal
			} else {
				scope.Steps[ref.Name] = cty.ObjectVal(byKey)
			}
		}
	}
	return scope
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
func (g *Graph) DecodeArgs(inst *Instance, results ResultFunc) (cty.Value, hcl.Diagnostics) {
	s := inst.Step
	spec := g.spec(s.Run.Action.Args)
	ctx := g.Playbook.EvalContext(g.Scope(inst, results))
	body := s.With
	if body == nil {
		body = hcl.EmptyBody()
	}
	v, diags := hcldec.Decode(body, spec, ctx)
	for _, d := range diags {
		if d.Subject == nil {
			// A missing required argument in a step without a with block.
			d.Subject = s.DeclRange.Ptr()
			d.Detail = fmt.Sprintf("%s (action %s)", d.Detail, s.Run)
		}
	}
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return v, nil
}

// spec returns the decoder spec of an argument schema, built once per graph.
func (g *Graph) spec(o *schema.Object) hcldec.Spec {
	g.specMu.Lock()
	defer g.specMu.Unlock()
	if sp, ok := g.specs[o]; ok {
		return sp
	}
	if g.specs == nil {
		g.specs = map[*schema.Object]hcldec.Spec{}
	}
	sp := o.DecoderSpec()
	g.specs[o] = sp
	return sp
}

// EvalWhen evaluates inst's `when`: true when unset.
func (g *Graph) EvalWhen(inst *Instance, results ResultFunc) (cty.Value, hcl.Diagnostics) {
	if inst.Step.When == nil {
		return cty.True, nil
	}
	v, diags := inst.Step.When.Value(g.Playbook.EvalContext(g.Scope(inst, results)))
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	v, _ = v.Unmark()
	if v.Type() != cty.Bool && v.Type() != cty.DynamicPseudoType || v.IsNull() {
		return cty.NilVal, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid when", Detail: "when must be true or false.", Subject: inst.Step.When.Range().Ptr()}}
	}
	return v, nil
}
