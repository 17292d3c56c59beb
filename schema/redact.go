package schema

import "github.com/zclconf/go-cty/cty"

// Redacted replaces a sensitive value wherever one is shown or recorded.
const Redacted = "(sensitive)"

// Redact returns v with every attribute that o marks sensitive replaced by
// the string "(sensitive)" (null and unknown values stay as they are, so a
// plan still says what is unset or not yet known). Attributes not in o are
// left alone.
func (o *Object) Redact(v cty.Value) cty.Value {
	if o == nil || v.IsNull() || !v.IsKnown() || !v.Type().IsObjectType() {
		return v
	}
	changed := false
	attrs := v.AsValueMap()
	for _, a := range o.Attributes {
		if !a.Sensitive {
			continue
		}
		av, ok := attrs[a.Name]
		if !ok || av.IsNull() || !av.IsKnown() {
			continue
		}
		attrs[a.Name] = cty.StringVal(Redacted)
		changed = true
	}
	for _, b := range o.Blocks {
		bv, ok := attrs[b.Name]
		if !ok || !b.Object.HasSensitive() || bv.IsNull() || !bv.IsKnown() {
			continue
		}
		if b.Nesting == NestingList && (bv.Type().IsListType() || bv.Type().IsTupleType()) {
			// Redacted elements may no longer share a type: a tuple.
			var elems []cty.Value
			for it := bv.ElementIterator(); it.Next(); {
				_, ev := it.Element()
				elems = append(elems, b.Object.Redact(ev))
			}
			attrs[b.Name] = cty.TupleVal(elems)
		} else {
			attrs[b.Name] = b.Object.Redact(bv)
		}
		changed = true
	}
	if !changed {
		return v
	}
	return cty.ObjectVal(attrs)
}

// HasSensitive reports whether any attribute of o is sensitive.
func (o *Object) HasSensitive() bool {
	if o == nil {
		return false
	}
	for _, a := range o.Attributes {
		if a.Sensitive {
			return true
		}
	}
	for _, b := range o.Blocks {
		if b.Object.HasSensitive() {
			return true
		}
	}
	return false
}
