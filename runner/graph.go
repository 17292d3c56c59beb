// The graph a playbook becomes: its instances, its join vertices, and the
// lookups a run makes in it.

package runner

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
)

// Instance is one execution of a step: the step itself, or one of its
// for_each items, or one rollout item's run of it.
type Instance struct {
	Addr string // step.drain["node-1"], or step.backup
	Step *playbooks.Step
	// Key is the instance key; Keyed is false for a single-instance step.
	Key   string
	Keyed bool
	// Each is {key, value} for keyed instances, cty.NilVal otherwise.
	Each cty.Value
	// Batch and Item place a rollout instance (both 1-based); 0 outside.
	Batch int
	Item  int
	// Seq is the instance's position in source order, for stable output.
	Seq int

	env *itemEnv // shared by a rollout item's instances; nil elsewhere
}

// Name makes Instance a dag.Vertex.
func (i *Instance) Name() string { return i.Addr }

// Graph is a playbook expanded into instances and their dependencies.
type Graph struct {
	Playbook  *playbooks.Playbook
	DAG       *dag.Graph
	Instances []*Instance
	// ByStep lists a step's instances in key order.
	ByStep map[string][]*Instance
	// Items lists each rollout's items (keys) by batch.
	Items map[string][][]string
	// itemInsts holds each rollout item's instances in step order
	// (rollout name -> item key), so chains and sibling references need no
	// address lookups.
	itemInsts map[string]map[string][]*Instance
	// refs is each step's depends_on and references together.
	refs map[*playbooks.Step][]playbooks.Reference

	withMu sync.Mutex // steps are decoded concurrently during a run
	withs  map[*playbooks.Step]*withBody

	pendingMu      sync.Mutex
	pendingVals    map[*playbooks.Step]cty.Value
	allPendingVals map[*playbooks.Step]cty.Value
	// joined holds the join vertices already connected.
	joined map[string]bool
}

// InstanceAddr renders the address of an instance.
func InstanceAddr(step string, key string, keyed bool) string {
	if !keyed {
		return "step." + step
	}
	return "step." + step + "[" + strconv.Quote(key) + "]" // %q, without fmt's cost: 11,000 per 1,000 nodes
}

// BuildGraph expands pb into instances and connects them. for_each and
// rollout `over` must be known before the run: they may refer to variables,
// locals and resources, not to step results.
func BuildGraph(pb *playbooks.Playbook) (*Graph, hcl.Diagnostics) {
	g := &Graph{Playbook: pb, DAG: dag.New(), ByStep: map[string][]*Instance{}, Items: map[string][][]string{}, joined: map[string]bool{},
		itemInsts: map[string]map[string][]*Instance{}, refs: map[*playbooks.Step][]playbooks.Reference{}}
	// Which steps and rollouts are waited for as a whole: their join
	// vertices are placed right after their instances.
	wanted := map[string]bool{}
	for _, st := range pb.Steps {
		g.refs[st] = append(append([]playbooks.Reference(nil), st.DependsOn...), st.References...)
		for _, ref := range g.refs[st] {
			wanted[ref.Kind+"."+ref.Name] = true
		}
	}
	for _, r := range pb.Rollouts {
		for _, ref := range append(append([]playbooks.Reference(nil), r.DependsOn...), r.References...) {
			wanted[ref.Kind+"."+ref.Name] = true
		}
	}
	var diags hcl.Diagnostics

	// Expand in source order: top-level steps and rollouts interleaved as
	// written, a rollout item-major, so ties in a walk go the way they read.
	type unit struct {
		step    *playbooks.Step
		rollout *playbooks.Rollout
		rng     hcl.Range
	}
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
		a, b := units[i].rng, units[j].rng
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	add := func(inst *Instance) {
		inst.Seq = len(g.Instances)
		g.Instances = append(g.Instances, inst)
		g.ByStep[inst.Step.Name] = append(g.ByStep[inst.Step.Name], inst)
		g.DAG.Add(inst)
	}
	// Items first, so the graph is sized once for every instance.
	unitItems := make([][]item, len(units))
	size := 0
	for i, u := range units {
		var ds hcl.Diagnostics
		if u.step != nil {
			unitItems[i], ds = expandForEach(pb, u.step)
			size += max(1, len(unitItems[i]))
		} else {
			unitItems[i], ds = expandOver(pb, u.rollout)
			size += len(unitItems[i]) * len(u.rollout.Steps)
		}
		diags = append(diags, ds...)
	}
	g.DAG.Grow(size)
	for i, u := range units {
		items := unitItems[i]
		if u.step != nil {
			if items == nil {
				add(&Instance{Addr: InstanceAddr(u.step.Name, "", false), Step: u.step, Each: cty.NilVal})
				continue
			}
			for _, it := range items {
				add(&Instance{Addr: InstanceAddr(u.step.Name, it.key, true), Step: u.step, Key: it.key, Keyed: true, Each: it.each()})
			}
			if wanted["step."+u.step.Name] && len(items) != 1 {
				g.addJoin("step." + u.step.Name + "[*]")
			}
			continue
		}
		r := u.rollout
		batches := batch(items, r.Batches)
		g.itemInsts[r.Name] = make(map[string][]*Instance, len(items))
		for bi, b := range batches {
			var keys []string
			for _, it := range b {
				keys = append(keys, it.key)
				each, env := it.each(), &itemEnv{} // shared by the item's instances
				insts := make([]*Instance, len(r.Steps))
				for k, s := range r.Steps {
					insts[k] = &Instance{Addr: InstanceAddr(s.Name, it.key, true), Step: s, Key: it.key, Keyed: true, Each: each, Batch: bi + 1, Item: it.index + 1, env: env}
					add(insts[k])
				}
				g.itemInsts[r.Name][it.key] = insts
			}
			g.Items[r.Name] = append(g.Items[r.Name], keys)
		}
		if wanted["rollout."+r.Name] {
			g.addJoin("rollout." + r.Name)
		}
	}
	if diags.HasErrors() {
		return g, diags
	}
	g.connect()
	// Kahn's order is the cheap check; only a graph that has a cycle pays
	// for finding and naming it.
	if _, err := g.DAG.TopologicalOrder(); err != nil {
		diags = append(diags, g.cycleDiagnostics(err.(*dag.CycleError))...)
	}
	return g, diags
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

// join is a no-op vertex that waits for every instance of a step (or every
// item of a rollout), so that n dependents of an n-instance step need 2n
// edges rather than n*n. The runner walks it as a no-op.
type join struct{ addr string }

func (j *join) Name() string { return j.addr }

// IsJoin reports whether a vertex of the graph is a join rather than an
// instance.
func IsJoin(v dag.Vertex) bool { _, ok := v.(*join); return ok }

// target returns the vertex that stands for "all of ref": the single
// instance of a step, or a join over its instances or a rollout's items.
func (g *Graph) target(ref playbooks.Reference) string {
	if ref.Kind == "step" {
		insts := g.ByStep[ref.Name]
		if len(insts) == 1 {
			return insts[0].Addr
		}
		addr := "step." + ref.Name + "[*]"
		if !g.joined[addr] {
			g.joined[addr] = true
			g.addJoin(addr)
			for _, t := range insts {
				g.DAG.Connect(addr, t.Addr)
			}
		}
		return addr
	}
	addr := "rollout." + ref.Name
	if !g.joined[addr] {
		g.joined[addr] = true
		g.addJoin(addr)
		for _, keys := range g.Items[ref.Name] {
			for _, key := range keys {
				g.DAG.Connect(addr, g.lastOf(ref.Name, key).Addr)
			}
		}
	}
	return addr
}

// addJoin adds a join vertex unless expansion already placed it, right
// after the instances it waits for, so that walks and plans take it up as
// soon as they are done rather than after everything added later.
func (g *Graph) addJoin(addr string) {
	if g.DAG.Vertex(addr) == nil {
		g.DAG.Add(&join{addr})
	}
}

// connect adds every edge: from depends_on and references (to all instances
// of the target, through a join), rollout step order within an item, and
// batch after batch.
func (g *Graph) connect() {
	pb := g.Playbook
	for _, inst := range g.Instances {
		s := inst.Step
		for _, ref := range g.refs[s] {
			if ref.Kind == "step" && s.Rollout != nil {
				if t := pb.Step(ref.Name); t != nil && t.Rollout == s.Rollout {
					continue // same item's earlier step: the chain below covers it
				}
			}
			g.DAG.Connect(inst.Addr, g.target(ref))
		}
	}
	for _, r := range pb.Rollouts {
		waitsFor := append(append([]playbooks.Reference(nil), r.DependsOn...), r.References...)
		var prevBatch []string
		for bi, keys := range g.Items[r.Name] {
			for _, key := range keys {
				insts := g.itemInsts[r.Name][key]
				for k := 1; k < len(insts); k++ {
					g.DAG.Connect(insts[k].Addr, insts[k-1].Addr)
				}
				// What the rollout waits for, only the first batch needs to
				// wait for: every later batch waits for the one before.
				if bi == 0 {
					for _, ref := range waitsFor {
						g.DAG.Connect(insts[0].Addr, g.target(ref))
					}
				}
				for _, p := range prevBatch {
					g.DAG.Connect(insts[0].Addr, g.lastOf(r.Name, p).Addr)
				}
			}
			prevBatch = keys
		}
	}
}

// lastOf is the instance of a rollout item's last step.
func (g *Graph) lastOf(rollout, key string) *Instance {
	insts := g.itemInsts[rollout][key]
	return insts[len(insts)-1]
}

// sibling is the instance of step that belongs to the same rollout item as
// inst, or nil.
func (g *Graph) sibling(inst *Instance, step string) *Instance {
	for _, t := range g.itemInsts[inst.Step.Rollout.Name][inst.Key] {
		if t.Step.Name == step {
			return t
		}
	}
	return nil
}

// cycleDiagnostics turns a cycle between instances into one diagnostic per
// cycle of steps, naming each step with its file and line.
func (g *Graph) cycleDiagnostics(ce *dag.CycleError) hcl.Diagnostics {
	var diags hcl.Diagnostics
	reported := map[string]bool{}
	for _, c := range ce.Cycles {
		var parts []string
		var steps []*playbooks.Step
		for _, name := range c {
			inst, ok := g.DAG.Vertex(name).(*Instance)
			if !ok {
				continue // a join: the steps around it say enough
			}
			s := inst.Step
			if len(steps) > 0 && steps[len(steps)-1] == s {
				continue
			}
			steps = append(steps, s)
		}
		if len(steps) > 1 && steps[0] == steps[len(steps)-1] {
			steps = steps[:len(steps)-1]
		}
		for _, s := range steps {
			parts = append(parts, fmt.Sprintf("%s (%s)", s.Address(), playbooks.At(s.DeclRange)))
		}
		key := strings.Join(parts, ",")
		if reported[key] {
			continue
		}
		reported[key] = true
		parts = append(parts, steps[0].Address())
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Dependency cycle",
			Detail:   fmt.Sprintf("These steps wait for each other, so none can start: %s. Remove a depends_on or a reference to break the cycle.", strings.Join(parts, " -> ")),
			Subject:  steps[0].DeclRange.Ptr(),
		})
	}
	return diags
}

var _ dag.Vertex = (*Instance)(nil)
