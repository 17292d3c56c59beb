package schema

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// CheckMembers checks v, one object of a node_pool's nodes list, against
// what the plugin reads from it (PluginSchema.Node): every required
// attribute present, not null and, for strings, not empty, and every named
// attribute of its type. Unlike Conform it lets other attributes through,
// since a node object also carries the platform's own (a migrate command, a
// processing flag) for the playbook's steps. Problems come in the order the
// plugin declares its attributes.
func (o *Object) CheckMembers(v cty.Value) Problems {
	if o == nil {
		return nil
	}
	v, _ = v.UnmarkDeep()
	ty := v.Type()
	if v.IsNull() || !v.IsKnown() || !(ty.IsObjectType() || ty.IsMapType()) {
		return Problems{{Message: "is not an object"}}
	}
	get := func(name string) (cty.Value, bool) {
		switch {
		case ty.IsObjectType() && ty.HasAttribute(name):
			return v.GetAttr(name), true
		case ty.IsMapType() && v.HasIndex(cty.StringVal(name)).True():
			return v.Index(cty.StringVal(name)), true
		}
		return cty.NilVal, false
	}
	var ps Problems
	for _, a := range o.Attributes {
		av, ok := get(a.Name)
		if !ok || av.IsNull() {
			if a.Required {
				ps = append(ps, Problem{Path: a.Name, Message: "is required"})
			}
			continue
		}
		if !av.IsKnown() {
			continue
		}
		cv, err := convert.Convert(av, a.Type)
		if err != nil {
			ps = append(ps, Problem{Path: a.Name, Message: fmt.Sprintf("must be %s", a.Type.FriendlyName())})
			continue
		}
		if a.Required && a.Type == cty.String && cv.AsString() == "" {
			ps = append(ps, Problem{Path: a.Name, Message: "must not be empty"})
		}
	}
	return ps
}
