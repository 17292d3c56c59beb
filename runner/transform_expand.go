// Expansion: every top-level step and rollout becomes its instances, one
// per step, per for_each key, or per rollout item and step, in source
// order; for_each and over are evaluated here, so they must be known
// before the run.

package runner

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
)

// expandTransform adds every instance, and right after a step's or a
// rollout's instances the join standing for all of them when something
// waits for it as a whole, so that walks and plans take the join up as soon
// as they are done rather than after everything added later.
type expandTransform struct{}

func (expandTransform) Name() string { return "expand instances" }

func (expandTransform) Transform(b *graphBuild) hcl.Diagnostics {
	pb := b.Playbook
	wanted := waitedForAsWhole(pb)
	units := sourceOrder(pb)
	var diags hcl.Diagnostics
	add := func(inst *StepInstance) {
		inst.Seq = len(b.Instances)
		b.Instances = append(b.Instances, inst)
		b.ByStep[inst.Step.Name] = append(b.ByStep[inst.Step.Name], inst)
		b.DAG.Add(inst)
	}
	// Items first, so the graph is sized once for every instance.
	unitItems := make([][]item, len(units))
	// Steps whose for_each is the same variable or local (read_only and
	// backup_data over local.nodes_by_name) share its items and their each
	// objects: 10,000 nodes made 10,000 more objects for each such step.
	byTraversal := map[string][]item{}
	eachOf := map[*item][]cty.Value{} // by the items' first, made once
	size := 0
	for i, u := range units {
		var ds hcl.Diagnostics
		if u.step != nil {
			key, same := sameValue(u.step.ForEach)
			if items, ok := byTraversal[key]; same && ok {
				unitItems[i] = items
			} else {
				unitItems[i], ds = expandForEach(pb, u.step)
				if same && len(ds) == 0 {
					byTraversal[key] = unitItems[i]
				}
			}
			size += max(1, len(unitItems[i]))
		} else {
			unitItems[i], ds = expandOver(pb, u.rollout)
			size += len(unitItems[i]) * len(u.rollout.Steps)
		}
		diags = append(diags, ds...)
	}
	b.DAG.Grow(size)
	for i, u := range units {
		items := unitItems[i]
		if u.step != nil {
			if u.step.ForEach == nil {
				add(&StepInstance{Addr: InstanceAddr(u.step.Name, "", false), Step: u.step, Each: cty.NilVal})
				continue
			}
			var each []cty.Value
			if len(items) > 0 {
				if each = eachOf[&items[0]]; each == nil {
					each = make([]cty.Value, len(items))
					for j, it := range items {
						each[j] = it.each()
					}
					eachOf[&items[0]] = each
				}
			}
			for j, it := range items {
				add(&StepInstance{Addr: InstanceAddr(u.step.Name, it.key, true), Step: u.step, Key: it.key, Keyed: true, Each: each[j]})
			}
			if wanted["step."+u.step.Name] && len(items) != 1 {
				b.addJoin("step." + u.step.Name + "[*]")
			}
			continue
		}
		r := u.rollout
		batches := batch(items, r.Batches)
		b.itemInsts[r.Name] = make(map[string][]*StepInstance, len(items))
		for bi, bt := range batches {
			var keys []string
			for _, it := range bt {
				keys = append(keys, it.key)
				each, env := it.each(), &itemEnv{} // shared by the item's instances
				insts := make([]*StepInstance, len(r.Steps))
				for k, s := range r.Steps {
					insts[k] = &StepInstance{Addr: InstanceAddr(s.Name, it.key, true), Step: s, Key: it.key, Keyed: true, Each: each, Batch: bi + 1, Item: it.index + 1, env: env}
					add(insts[k])
				}
				b.itemInsts[r.Name][it.key] = insts
			}
			b.Items[r.Name] = append(b.Items[r.Name], keys)
		}
		if wanted["rollout."+r.Name] {
			b.addJoin("rollout." + r.Name)
		}
	}
	return diags
}

// sameValue names expr when it is a variable or a local, or an attribute
// of one (var.nodes, local.by_name.x): its value is the same wherever it
// is evaluated, so its items are too.
func sameValue(expr hcl.Expression) (string, bool) {
	st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
	if !ok || st.Traversal.IsRelative() || (st.Traversal.RootName() != "var" && st.Traversal.RootName() != "local") {
		return "", false
	}
	key := st.Traversal.RootName()
	for _, t := range st.Traversal[1:] {
		a, ok := t.(hcl.TraverseAttr)
		if !ok {
			return "", false
		}
		key += "." + a.Name
	}
	return key, true
}

// unit is what expansion takes one at a time: a top-level step or a
// rollout.
type unit struct {
	step    *playbooks.Step
	rollout *playbooks.Rollout
	rng     hcl.Range
}

// sourceOrder lists the top-level steps and rollouts interleaved as
// written, so that ties in a walk go the way they read (a rollout is
// expanded item-major).
func sourceOrder(pb *playbooks.Playbook) []unit {
	var units []unit
	for _, s := range pb.Steps {
		if s.Rollout == nil {
			units = append(units, unit{step: s, rng: s.DeclRange})
		}
	}
	for _, r := range pb.Rollouts {
		units = append(units, unit{rollout: r, rng: r.DeclRange})
	}
	sort.SliceStable(units, func(i, j int) bool {
		x, y := units[i].rng, units[j].rng
		if x.Filename != y.Filename {
			return x.Filename < y.Filename
		}
		return x.Start.Byte < y.Start.Byte
	})
	return units
}

// waitedForAsWhole names the steps and rollouts ("step.x", "rollout.r")
// that a step or rollout refers to or depends on.
func waitedForAsWhole(pb *playbooks.Playbook) map[string]bool {
	wanted := map[string]bool{}
	mark := func(lists ...[]playbooks.Reference) {
		for _, refs := range lists {
			for _, ref := range refs {
				wanted[ref.Kind+"."+ref.Name] = true
			}
		}
	}
	for _, s := range pb.Steps {
		mark(s.DependsOn, s.References)
	}
	for _, r := range pb.Rollouts {
		mark(r.DependsOn, r.References)
	}
	return wanted
}

type item struct {
	index int
	key   string
	value cty.Value
}

func (it item) each() cty.Value {
	return cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(it.key), "value": it.value})
}

func expandForEach(pb *playbooks.Playbook, s *playbooks.Step) ([]item, hcl.Diagnostics) {
	if s.ForEach == nil {
		return nil, nil
	}
	return collectionItems(pb, s.ForEach, nil, "for_each", s.Address())
}

func expandOver(pb *playbooks.Playbook, r *playbooks.Rollout) ([]item, hcl.Diagnostics) {
	return collectionItems(pb, r.Over, r.Key, "over", r.Address())
}

// collectionItems evaluates a for_each or over expression into keyed
// items. A map or object is keyed by its keys; a list, tuple or set by the
// `key` expression when given, else by each element's name (objects) or the
// element itself (strings).
func collectionItems(pb *playbooks.Playbook, expr, keyExpr hcl.Expression, what, owner string) ([]item, hcl.Diagnostics) {
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid %s", what), Detail: detail, Subject: expr.Range().Ptr()}}
	}
	// Steps it refers to are unknown before the run, which is reported below.
	scope := &playbooks.Scope{Each: cty.NilVal, Steps: map[string]cty.Value{}}
	var refs []string
	for _, tr := range expr.Variables() {
		if tr.RootName() == "step" && len(tr) > 1 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				scope.Steps[a.Name] = cty.DynamicVal
				refs = append(refs, "step."+a.Name)
			}
		}
	}
	v, diags := expr.Value(pb.EvalContext(scope))
	if diags.HasErrors() {
		return nil, diags
	}
	// Only a step's result can be unknown here (variables and locals are
	// values by now), so a collection that names no step is known without
	// walking all of its 1,000 items.
	if len(refs) > 0 && !v.IsWhollyKnown() {
		return nil, bad(fmt.Sprintf("The %s of %s must be known before the run starts, to know how many instances there are; it depends on %s. Use variables, locals or node_pool nodes instead.", what, owner, strings.Join(refs, ", ")))
	}
	// Instance keys are shown everywhere (addresses, plans, journal), so
	// they may not come from a sensitive value; sensitive values inside the
	// items keep their marks through each.value.
	if v.HasMark(playbooks.SensitiveMark) {
		return nil, bad(fmt.Sprintf("The %s of %s is sensitive; its items become instance addresses shown in plans and journals, so it cannot be sensitive as a whole.", what, owner))
	}
	if !v.IsKnown() {
		return nil, bad(fmt.Sprintf("The %s of %s must be known before the run starts, to know how many instances there are.", what, owner))
	}
	if v.IsNull() {
		return nil, bad(fmt.Sprintf("The %s of %s is null; it must be a map, a set of strings or a list.", what, owner))
	}
	ty := v.Type()
	var items []item
	seen := map[string]bool{}
	addItem := func(key string, val cty.Value) hcl.Diagnostics {
		if seen[key] {
			return bad(fmt.Sprintf("Two items of %s have the key %q; keys must be unique so every instance has its own address.", owner, key))
		}
		seen[key] = true
		items = append(items, item{index: len(items), key: key, value: val})
		return nil
	}
	switch {
	case ty.IsMapType() || ty.IsObjectType():
		for it := v.ElementIterator(); it.Next(); {
			k, val := it.Element()
			if ds := addItem(k.AsString(), val); ds != nil {
				return nil, ds
			}
		}
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, val := it.Element()
			key, ds := itemKey(pb, val, i, keyExpr)
			if ds != nil {
				return nil, ds
			}
			if key == "" {
				return nil, bad(fmt.Sprintf("Element %d of the %s of %s has no key: give each element a name, or use strings (a rollout can also set `key`).", i, what, owner))
			}
			if ds := addItem(key, val); ds != nil {
				return nil, ds
			}
		}
	default:
		return nil, bad(fmt.Sprintf("The %s of %s is %s; it must be a map, a set of strings or a list.", what, owner, ty.FriendlyName()))
	}
	return items, nil
}

func itemKey(pb *playbooks.Playbook, val cty.Value, index int, keyExpr hcl.Expression) (string, hcl.Diagnostics) {
	if keyExpr != nil {
		each := cty.ObjectVal(map[string]cty.Value{"key": cty.NumberIntVal(int64(index)), "value": val})
		k, diags := keyExpr.Value(pb.EvalContext(&playbooks.Scope{Each: each}))
		if diags.HasErrors() {
			return "", diags
		}
		k, _ = k.Unmark()
		if k.IsNull() || !k.IsKnown() || k.Type() != cty.String {
			return "", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid key", Detail: "key must evaluate to a string for every item.", Subject: keyExpr.Range().Ptr()}}
		}
		return k.AsString(), nil
	}
	sensitiveKey := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Sensitive instance key", Detail: "An item's key would come from a sensitive value; keys are shown in instance addresses, so they cannot be sensitive."}}
	if val.HasMark(playbooks.SensitiveMark) {
		return "", sensitiveKey
	}
	switch {
	case val.Type() == cty.String && val.IsKnown() && !val.IsNull():
		return val.AsString(), nil
	case val.Type().IsObjectType() && val.Type().HasAttribute("name"):
		n := val.GetAttr("name")
		if n.HasMark(playbooks.SensitiveMark) {
			return "", sensitiveKey
		}
		if n.Type() == cty.String && n.IsKnown() && !n.IsNull() {
			return n.AsString(), nil
		}
	}
	return "", nil
}

// batch groups items by the rollout's batch sizes; the last size repeats.
func batch(items []item, sizes []playbooks.BatchSize) [][]item {
	var out [][]item
	for i, b := 0, 0; i < len(items); b++ {
		size := sizes[min(b, len(sizes)-1)].Of(len(items))
		end := min(i+size, len(items))
		out = append(out, items[i:end])
		i = end
	}
	return out
}
