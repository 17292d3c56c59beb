package schema

import (
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Problem is one way a value misses its schema object: the path of the
// attribute or block at fault, rendered by PathString ("socket",
// "header[1].name"; empty for the value as a whole), and what is wrong.
type Problem struct {
	Path    string
	Message string
}

// Problems are the problems Conform found, sorted by path.
type Problems []Problem

// Error joins the problems into one line: "path: message; ...".
func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		if p.Path != "" {
			parts[i] = p.Path + ": " + p.Message
		} else {
			parts[i] = p.Message
		}
	}
	return strings.Join(parts, "; ")
}

// PathString renders a path the way diagnostics name arguments: attribute
// and block names joined by dots, list indexes and map keys in brackets
// ("header[1].name", `env["HOME"]`). An empty path is "".
func PathString(p cty.Path) string {
	var b strings.Builder
	for _, step := range p {
		switch s := step.(type) {
		case cty.GetAttrStep:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Name)
		case cty.IndexStep:
			switch {
			case s.Key.IsNull() || !s.Key.IsKnown():
				b.WriteString("[?]")
			case s.Key.Type() == cty.Number:
				bf := s.Key.AsBigFloat()
				if i, acc := bf.Int64(); acc == big.Exact {
					fmt.Fprintf(&b, "[%d]", i)
				} else {
					fmt.Fprintf(&b, "[%s]", bf.Text('g', -1))
				}
			case s.Key.Type() == cty.String:
				fmt.Fprintf(&b, "[%q]", s.Key.AsString())
			default:
				b.WriteString("[?]")
			}
		}
	}
	return b.String()
}

// Conform converts v to o's implied type, attribute by attribute and block
// by block, so that each problem names its path (header[1].name). A null
// or NilVal v counts as an empty object; marks are removed. With needKnown,
// unknown values are problems (a call cannot run on a value nobody knows
// yet); without it an unknown v gives an unknown of o's implied type.
//
// It is the one check of a value against a schema object: the SDK runs it
// on both ends of a plugin connection (config, arguments, results).
func Conform(o *Object, v cty.Value, needKnown bool) (cty.Value, Problems) {
	out, probs := conformObject(o, v, needKnown, nil)
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Path < probs[j].Path })
		return cty.NilVal, probs
	}
	return out, nil
}

func problemAt(path cty.Path, format string, args ...any) Problem {
	return Problem{Path: PathString(path), Message: fmt.Sprintf(format, args...)}
}

// at is path extended by an attribute step, in a fresh slice so sibling
// paths never share a backing array.
func at(path cty.Path, name string) cty.Path {
	return append(path[:len(path):len(path)], cty.GetAttrStep{Name: name})
}

func conformObject(o *Object, v cty.Value, needKnown bool, path cty.Path) (cty.Value, Problems) {
	if v == cty.NilVal || v.IsNull() {
		v = cty.EmptyObjectVal
	}
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() {
		if needKnown {
			return cty.NilVal, Problems{problemAt(path, "the value is not known yet")}
		}
		return cty.UnknownVal(o.ImpliedType()), nil
	}
	ty := v.Type()
	if !ty.IsObjectType() && !ty.IsMapType() {
		return cty.NilVal, Problems{problemAt(path, "an object is required, not %s", ty.FriendlyName())}
	}
	in := v.AsValueMap()
	var probs Problems
	for name := range in {
		if o.Attribute(name) == nil && o.Block(name) == nil {
			probs = append(probs, problemAt(at(path, name), "unsupported attribute %q", name))
		}
	}
	out := map[string]cty.Value{}
	if o != nil {
		for _, a := range o.Attributes {
			ap := at(path, a.Name)
			av, ok := in[a.Name]
			if !ok || av.IsNull() {
				if a.Required {
					probs = append(probs, problemAt(ap, "attribute %q is required", a.Name))
				}
				out[a.Name] = cty.NullVal(a.Type)
				continue
			}
			if needKnown && !av.IsWhollyKnown() {
				probs = append(probs, problemAt(ap, "the value is not known yet"))
				continue
			}
			cv, err := convert.Convert(av, a.Type)
			if err != nil {
				probs = append(probs, problemAt(ap, "wrong type: %s", err))
				continue
			}
			out[a.Name] = cv
		}
		for _, b := range o.Blocks {
			bv, ps := conformBlock(b, in[b.Name], needKnown, at(path, b.Name))
			out[b.Name] = bv
			probs = append(probs, ps...)
		}
	}
	if len(probs) > 0 {
		return cty.NilVal, probs
	}
	if len(out) == 0 {
		return cty.EmptyObjectVal, nil
	}
	return cty.ObjectVal(out), nil
}

// conformBlock conforms a nested block's value: an object (single) or a
// list of them, each conformed to the block's own object.
func conformBlock(b *Block, v cty.Value, needKnown bool, path cty.Path) (cty.Value, Problems) {
	if v == cty.NilVal || v.IsNull() {
		var probs Problems
		if b.Required || b.MinItems > 0 {
			probs = append(probs, problemAt(path, "block %q is required", b.Name))
		}
		if b.Nesting == NestingList {
			return cty.ListValEmpty(b.Object.ImpliedType()), probs
		}
		return cty.NullVal(b.ImpliedType()), probs
	}
	if b.Nesting != NestingList {
		return conformObject(b.Object, v, needKnown, path)
	}
	uv, _ := v.Unmark()
	if !uv.IsKnown() {
		if needKnown {
			return cty.NilVal, Problems{problemAt(path, "the value is not known yet")}
		}
		return cty.UnknownVal(b.ImpliedType()), nil
	}
	ty := uv.Type()
	if !ty.IsListType() && !ty.IsTupleType() && !ty.IsSetType() {
		return cty.NilVal, Problems{problemAt(path, "a list of %q blocks is required, not %s", b.Name, ty.FriendlyName())}
	}
	var elems []cty.Value
	var probs Problems
	i := 0
	for it := uv.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		ep := append(path[:len(path):len(path)], cty.IndexStep{Key: cty.NumberIntVal(int64(i))})
		ov, ps := conformObject(b.Object, ev, needKnown, ep)
		probs = append(probs, ps...)
		elems = append(elems, ov)
	}
	if i < b.MinItems || (b.MaxItems > 0 && i > b.MaxItems) {
		probs = append(probs, problemAt(path, "%d %q blocks given; %s", i, b.Name, itemRange(b)))
	}
	if len(probs) > 0 {
		return cty.NilVal, probs
	}
	if len(elems) == 0 {
		return cty.ListValEmpty(b.Object.ImpliedType()), nil
	}
	return cty.ListVal(elems), nil
}

func itemRange(b *Block) string {
	switch {
	case b.MaxItems > 0 && b.MinItems == b.MaxItems:
		return fmt.Sprintf("exactly %d allowed", b.MinItems)
	case b.MaxItems > 0:
		return fmt.Sprintf("between %d and %d allowed", b.MinItems, b.MaxItems)
	default:
		return fmt.Sprintf("at least %d required", b.MinItems)
	}
}
