// Planning: every instance in walk order with its arguments decoded before
// the run, so that a wrong or missing argument is reported before anything
// runs. Rendering the plan is in plan_render.go.

package runner

import (
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
)

// Plan is the ordered list of instances a run would execute, with the
// arguments known before the run.
type Plan struct {
	Graph *Graph
	Steps []*PlannedStep
	// Preflights are the preflight instances with their arguments, run
	// before a new run begins.
	Preflights []*PlannedStep
	// Verifies are the verify instances with their arguments, run after
	// the run finishes.
	Verifies []*PlannedStep
	// PointOfNoReturn is the first instance, in plan order, of the step
	// marked point_of_no_return; "" when none is.
	PointOfNoReturn string
}

// PlannedStep is one instance in plan order.
type PlannedStep struct {
	Instance *StepInstance
	// Args is the decoded argument object; attributes that depend on other
	// steps' results are unknown.
	Args cty.Value
	// KnownAfter maps an unknown argument to the steps it waits for.
	KnownAfter map[string][]string
}

// MakePlan builds g's plan: every instance in walk order (dependencies
// first, source order among equals), with its arguments decoded.
func MakePlan(g *Graph) (*Plan, hcl.Diagnostics) {
	order, err := g.DAG.TopologicalOrder()
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Dependency cycle", Detail: err.Error()}}
	}
	insts := make([]*StepInstance, 0, len(g.Instances))
	for _, name := range order {
		if inst, ok := g.DAG.Vertex(name).(*StepInstance); ok {
			insts = append(insts, inst)
		}
	}
	// Instances decode independently (the evaluation context is shared
	// read-only), so a large plan uses every core.
	type decoded struct {
		args  cty.Value
		diags hcl.Diagnostics
	}
	out := make([]decoded, len(insts))
	var none ResultFunc // nothing has finished
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(insts); i += workers {
				args, ds := g.DecodeArgs(insts[i], none)
				if !ds.HasErrors() {
					_, ds = g.EvalWhen(insts[i], none)
				}
				out[i] = decoded{args, ds}
			}
		}(w)
	}
	wg.Wait()

	p := &Plan{Graph: g, Steps: make([]*PlannedStep, 0, len(insts))}
	planned := make([]PlannedStep, len(insts))
	var failed instanceDiags
	refs := map[*playbooks.Step]map[string][]string{}
	lastKnownAfter := map[*playbooks.Step]map[string][]string{}
	for i, inst := range insts {
		if ds := out[i].diags; ds.HasErrors() {
			failed.add(inst, ds)
			continue
		}
		args := out[i].args
		ps := &planned[len(p.Steps)] // one allocation for all of them
		*ps = PlannedStep{Instance: inst, Args: args, KnownAfter: knownAfter(inst.Step, args, refs, lastKnownAfter)}
		p.Steps = append(p.Steps, ps)
	}
	for _, probes := range []struct {
		insts []*StepInstance
		into  *[]*PlannedStep
	}{{g.Preflights, &p.Preflights}, {g.Verifies, &p.Verifies}} {
		for _, inst := range probes.insts {
			args, ds := g.DecodeArgs(inst, none)
			if !ds.HasErrors() {
				_, ds = g.EvalWhen(inst, none)
			}
			if ds.HasErrors() {
				failed.add(inst, ds)
				continue
			}
			*probes.into = append(*probes.into, &PlannedStep{Instance: inst, Args: args})
		}
	}
	if failed.list != nil {
		perStep := map[*playbooks.Step]int{}
		for _, inst := range append(append(insts, g.Preflights...), g.Verifies...) {
			perStep[inst.Step]++
		}
		return nil, failed.diagnostics(perStep)
	}
	for _, ps := range p.Steps {
		if ps.Instance.Step.PointOfNoReturn {
			p.PointOfNoReturn = ps.Instance.Addr
			break
		}
	}
	return p, nil
}

// instanceDiags gathers the errors of a step's instances. An error every
// instance shares (a misspelt argument) is reported once; one that only
// some instances have (a node whose object lacks an attribute) is reported
// once too, naming the instances it came from, so that neither 1,000
// copies nor a hidden second node's error reach the operator.
type instanceDiags struct {
	list  hcl.Diagnostics
	index map[string]int    // step, diagnostic identity -> position in list
	insts [][]*StepInstance // the instances that produced list[i]
}

func (d *instanceDiags) add(inst *StepInstance, ds hcl.Diagnostics) {
	if d.index == nil {
		d.index = map[string]int{}
	}
	for _, diag := range ds {
		key := inst.Step.Address() + "\x00" + diag.Summary + "\x00" + diag.Detail
		if diag.Subject != nil {
			key += "\x00" + diag.Subject.String()
		}
		if i, ok := d.index[key]; ok {
			d.insts[i] = append(d.insts[i], inst)
			continue
		}
		d.index[key] = len(d.list)
		d.list = append(d.list, diag)
		d.insts = append(d.insts, []*StepInstance{inst})
	}
}

// diagnostics names, in each diagnostic whose step has several instances
// but which only some of them produced, the instances concerned.
func (d *instanceDiags) diagnostics(perStep map[*playbooks.Step]int) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(d.list))
	for i, diag := range d.list {
		insts := d.insts[i]
		total := perStep[insts[0].Step]
		if total <= 1 || len(insts) == total {
			out[i] = diag
			continue
		}
		c := *diag
		names := make([]string, 0, 3)
		for _, inst := range insts[:min(3, len(insts))] {
			names = append(names, inst.Addr)
		}
		which := strings.Join(names, ", ")
		if len(insts) > len(names) {
			which += fmt.Sprintf(" and %d more", len(insts)-len(names))
		}
		c.Detail = strings.TrimSpace(fmt.Sprintf("%s (in %s: %d of %d instances)", diag.Detail, which, len(insts), total))
		out[i] = &c
	}
	return out
}

// RunStarts is what an argument made from run.id waits for, in a plan's
// KnownAfter.
const RunStarts = "the run starts"

// knownAfter finds, for each unknown argument, the steps its expression
// refers to. The answer depends only on the step, so it is worked out once
// per step (refs) and filtered by what is unknown in this instance.
func knownAfter(s *playbooks.Step, args cty.Value, refs map[*playbooks.Step]map[string][]string, lastKnownAfter map[*playbooks.Step]map[string][]string) map[string][]string {
	if s.With == nil {
		return nil // only a step's result or run.id can be unknown in a plan
	}
	byAttr, ok := refs[s]
	if !ok {
		byAttr = map[string][]string{}
		vars := map[string][]hcl.Traversal{}
		attrs, _ := s.With.JustAttributes()
		for name, a := range attrs {
			vars[name] = a.Expr.Variables()
		}
		if args := s.Run.Action.Args; args != nil {
			for _, b := range args.Blocks {
				spec := args.DecoderSpec().(hcldec.ObjectSpec)
				vars[b.Name] = hcldec.Variables(s.With, hcldec.ObjectSpec{b.Name: spec[b.Name]})
			}
		}
		for name, trs := range vars {
			seen := map[string]bool{}
			for _, tr := range trs {
				if tr.RootName() == "run" && !seen["run"] {
					seen["run"] = true
					byAttr[name] = append(byAttr[name], RunStarts)
				}
				if tr.RootName() != "step" || len(tr) < 2 {
					continue
				}
				if at, ok := tr[1].(hcl.TraverseAttr); ok && !seen[at.Name] {
					seen[at.Name] = true
					byAttr[name] = append(byAttr[name], "step."+at.Name)
				}
			}
		}
		refs[s] = byAttr
	}
	var out map[string][]string
	for name, steps := range byAttr {
		if args.Type().HasAttribute(name) && !args.GetAttr(name).IsWhollyKnown() {
			if out == nil {
				out = map[string][]string{}
			}
			out[name] = steps
		}
	}
	// The instances of a step mostly have the same arguments unknown: they
	// share one map (plans only read it) rather than 10,000 copies.
	if out != nil {
		if last := lastKnownAfter[s]; sameKeys(last, out) {
			return last
		}
		lastKnownAfter[s] = out
	}
	return out
}

// sameKeys reports whether a and b map the same names (to the same steps,
// since both come from one step's byAttr).
func sameKeys(a, b map[string][]string) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return false
		}
	}
	return true
}
