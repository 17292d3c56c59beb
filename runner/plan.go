package runner

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/dag"
	"github.com/upshift-dev/upshift/schema"
)

// Plan is the ordered list of instances a run would execute, with the
// arguments known before the run.
type Plan struct {
	Graph *Graph
	Steps []*PlannedStep
}

// PlannedStep is one instance in plan order.
type PlannedStep struct {
	Instance *Instance
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
	var insts []*Instance
	for _, name := range order {
		if inst, ok := g.DAG.Vertex(name).(*Instance); ok {
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
	none := func(*Instance) (cty.Value, bool) { return cty.NilVal, false }
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

	p := &Plan{Graph: g}
	var failed instanceDiags
	refs := map[*playbooks.Step]map[string][]string{}
	for i, inst := range insts {
		if ds := out[i].diags; ds.HasErrors() {
			failed.add(inst, ds)
			continue
		}
		args := out[i].args
		p.Steps = append(p.Steps, &PlannedStep{Instance: inst, Args: args, KnownAfter: knownAfter(inst.Step, args, refs)})
	}
	if failed.list != nil {
		perStep := map[*playbooks.Step]int{}
		for _, inst := range insts {
			perStep[inst.Step]++
		}
		return nil, failed.diagnostics(perStep)
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
	index map[string]int // step, diagnostic identity -> position in list
	insts [][]*Instance  // the instances that produced list[i]
}

func (d *instanceDiags) add(inst *Instance, ds hcl.Diagnostics) {
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
		d.insts = append(d.insts, []*Instance{inst})
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

// knownAfter finds, for each unknown argument, the steps its expression
// refers to. The answer depends only on the step, so it is worked out once
// per step (refs) and filtered by what is unknown in this instance.
func knownAfter(s *playbooks.Step, args cty.Value, refs map[*playbooks.Step]map[string][]string) map[string][]string {
	if s.With == nil || len(s.References) == 0 {
		return nil // only a step's result can be unknown in a plan
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
	return out
}

// WriteText renders the plan for a person.
func (p *Plan) WriteText(out io.Writer) error {
	// 1,000 nodes are 35,000 lines: one write each was a third of the
	// command's time.
	w := bufio.NewWriter(out)
	pb := p.Graph.Playbook
	fmt.Fprintf(w, "Plan: %d %s", len(p.Steps), plural(len(p.Steps), "step", "steps"))
	if len(pb.Rollouts) > 0 {
		var parts []string
		for _, r := range pb.Rollouts {
			parts = append(parts, fmt.Sprintf("rollout %q: %d items in %d batches", r.Name, countItems(p.Graph.Items[r.Name]), len(p.Graph.Items[r.Name])))
		}
		fmt.Fprintf(w, " (%s)", strings.Join(parts, "; "))
	}
	fmt.Fprintln(w)
	var lastBatch string
	for i, ps := range p.Steps {
		inst := ps.Instance
		if r := inst.Step.Rollout; r != nil {
			b := fmt.Sprintf("%s/%d", r.Name, inst.Batch)
			if b != lastBatch {
				fmt.Fprintf(w, "\nrollout %q batch %d of %d: %s (on_failure = %s)\n", r.Name, inst.Batch, len(p.Graph.Items[r.Name]), strings.Join(p.Graph.Items[r.Name][inst.Batch-1], ", "), r.OnFailure)
				lastBatch = b
			}
		} else if lastBatch != "" {
			fmt.Fprintln(w)
			lastBatch = ""
		}
		fmt.Fprintf(w, "%4d  %s  %s", i+1, inst.Addr, inst.Step.Run)
		if inst.Step.When != nil {
			fmt.Fprintf(w, "  (when: %s)", exprText(inst.Step.When))
		}
		fmt.Fprintln(w)
		for _, line := range argLines(inst, ps) {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
	return w.Flush()
}

func countItems(batches [][]string) int {
	n := 0
	for _, b := range batches {
		n += len(b)
	}
	return n
}

func exprText(e hcl.Expression) string {
	rng := e.Range()
	return fmt.Sprintf("%s:%d", rng.Filename, rng.Start.Line)
}

// argLines renders a step's set arguments in schema order, one per line,
// with sensitive values hidden and unknown ones named by what they wait for.
func argLines(inst *Instance, ps *PlannedStep) []string {
	args := shownArgs(inst.Step.Run.Action.Args, ps.Args)
	width := 0
	for _, a := range args {
		if !a.value.IsNull() || !a.value.IsKnown() {
			width = max(width, len(a.name))
		}
	}
	var lines []string
	for _, a := range args {
		if a.value.IsKnown() && a.value.IsNull() {
			continue
		}
		lines = append(lines, fmt.Sprintf("%-*s = %s", width, a.name, renderValue(a.value, a.sensitive, ps.KnownAfter[a.name])))
	}
	return lines
}

// shownArg is one argument as plans show it.
type shownArg struct {
	name      string
	value     cty.Value
	sensitive bool
}

// shownArgs lists a step's arguments in schema order, attributes then
// nested blocks; a block's sensitive attributes are already replaced by
// "(sensitive)", since the block as a whole is not secret.
func shownArgs(o *schema.Object, args cty.Value) []shownArg {
	if o == nil {
		return nil
	}
	var out []shownArg
	for _, a := range o.Attributes {
		out = append(out, shownArg{a.Name, args.GetAttr(a.Name), a.Sensitive})
	}
	for _, b := range o.Blocks {
		v := args.GetAttr(b.Name)
		if b.Object.HasSensitive() && !v.IsMarked() && v.IsWhollyKnown() {
			one := &schema.Object{Blocks: []*schema.Block{b}}
			v = one.Redact(cty.ObjectVal(map[string]cty.Value{b.Name: v})).GetAttr(b.Name)
		}
		out = append(out, shownArg{b.Name, v, false})
	}
	return out
}

func renderValue(v cty.Value, sensitive bool, after []string) string {
	secret := sensitive || containsSensitive(v)
	if !v.IsWhollyKnown() {
		what := "known after " + strings.Join(after, ", ")
		if len(after) == 0 {
			what = "known during the run"
		}
		if secret {
			what = "sensitive, " + what
		}
		return "(" + what + ")"
	}
	if secret {
		return "(sensitive)"
	}
	return inlineValue(v)
}

// inlineValue writes a known value as HCL on one line, so that a plan's
// argument stays on its line: objects as { a = 1, b = "x" }, which
// hclwrite would spread over several.
func inlineValue(v cty.Value) string {
	ty := v.Type()
	switch {
	case v.IsNull():
		return "null"
	case ty.IsObjectType() || ty.IsMapType():
		if v.LengthInt() == 0 {
			return "{}"
		}
		var parts []string
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			key := k.AsString()
			if !hclsyntax.ValidIdentifier(key) {
				key = strconv.Quote(key)
			}
			parts = append(parts, key+" = "+inlineValue(ev))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		var parts []string
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			parts = append(parts, inlineValue(ev))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case ty == cty.Number:
		// hclwrite prints every number through big.Float's shortest
		// decimal, some 30 µs each; whole numbers are most of them.
		if bf := v.AsBigFloat(); bf.IsInt() {
			if i, acc := bf.Int64(); acc == big.Exact {
				return strconv.FormatInt(i, 10)
			}
		}
	}
	return strings.TrimSpace(string(hclwrite.TokensForValue(v).Bytes()))
}

func containsSensitive(v cty.Value) bool {
	if v.Type().IsPrimitiveType() {
		return v.HasMark(playbooks.SensitiveMark)
	}
	_, pvm := v.UnmarkDeepWithPaths()
	for _, pm := range pvm {
		if _, ok := pm.Marks[playbooks.SensitiveMark]; ok {
			return true
		}
	}
	return false
}

// jsonPlan is the machine-readable form of a plan.
type jsonPlan struct {
	Playbook string        `json:"playbook"`
	Steps    []jsonStep    `json:"steps"`
	Rollouts []jsonRollout `json:"rollouts,omitempty"`
}

type jsonRollout struct {
	Name      string     `json:"name"`
	OnFailure string     `json:"on_failure"`
	Batches   [][]string `json:"batches"`
}

type jsonStep struct {
	Index      int                        `json:"index"`
	Address    string                     `json:"address"`
	Step       string                     `json:"step"`
	Key        *string                    `json:"key,omitempty"`
	Rollout    string                     `json:"rollout,omitempty"`
	Batch      int                        `json:"batch,omitempty"`
	Action     string                     `json:"action"`
	Args       map[string]json.RawMessage `json:"args"`
	KnownAfter map[string][]string        `json:"known_after,omitempty"`
	DependsOn  []string                   `json:"depends_on"`
}

// WriteJSON renders the plan as one JSON document.
func (p *Plan) WriteJSON(w io.Writer) error {
	out := jsonPlan{Playbook: p.Graph.Playbook.Dir, Steps: []jsonStep{}}
	for _, r := range p.Graph.Playbook.Rollouts {
		out.Rollouts = append(out.Rollouts, jsonRollout{Name: r.Name, OnFailure: r.OnFailure, Batches: p.Graph.Items[r.Name]})
	}
	for i, ps := range p.Steps {
		inst := ps.Instance
		js := jsonStep{Index: i + 1, Address: inst.Addr, Step: inst.Step.Name, Action: inst.Step.Run.String(), Batch: inst.Batch, Args: map[string]json.RawMessage{}, KnownAfter: ps.KnownAfter, DependsOn: p.Graph.dependencies(inst.Addr)}
		if inst.Keyed {
			k := inst.Key
			js.Key = &k
		}
		if inst.Step.Rollout != nil {
			js.Rollout = inst.Step.Rollout.Name
		}
		for _, a := range shownArgs(inst.Step.Run.Action.Args, ps.Args) {
			v := a.value
			switch {
			case v.IsKnown() && v.IsNull():
				continue
			case a.sensitive || containsSensitive(v):
				js.Args[a.name] = json.RawMessage(`"(sensitive)"`)
			case !v.IsWhollyKnown():
				js.Args[a.name] = json.RawMessage(`null`)
			default:
				b, err := ctyjson.Marshal(v, v.Type())
				if err != nil {
					return err
				}
				js.Args[a.name] = b
			}
		}
		out.Steps = append(out.Steps, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// dependencies lists what an instance waits for directly, a join shown as
// the step or rollout it stands for.
func (g *Graph) dependencies(addr string) []string {
	out := []string{}
	for _, d := range g.DAG.Dependencies(addr) {
		if IsJoin(g.DAG.Vertex(d)) {
			d = strings.TrimSuffix(d, "[*]")
		}
		out = append(out, d)
	}
	return out
}

// reduced returns a copy of the graph's DAG after transitive reduction.
func (g *Graph) reduced() *dag.Graph {
	c := g.DAG.Copy()
	c.TransitiveReduction()
	return c
}

// WriteDOT renders the graph in Graphviz DOT, after transitive reduction,
// with one cluster per rollout batch.
func (g *Graph) WriteDOT(out io.Writer) error {
	w := bufio.NewWriter(out)
	c := g.reduced()
	fmt.Fprintln(w, "digraph upshift {")
	fmt.Fprintln(w, "  rankdir = \"LR\";")
	fmt.Fprintln(w, "  node [shape = box, fontname = \"Helvetica\", fontsize = 10];")
	clusters := map[string][]*Instance{}
	var clusterNames []string
	for _, inst := range g.Instances {
		if inst.Step.Rollout == nil {
			fmt.Fprintf(w, "  %q [label = %q];\n", inst.Addr, inst.Addr+"\n"+inst.Step.Run.String())
			continue
		}
		cn := fmt.Sprintf("%s_batch_%d", inst.Step.Rollout.Name, inst.Batch)
		if _, ok := clusters[cn]; !ok {
			clusterNames = append(clusterNames, cn)
		}
		clusters[cn] = append(clusters[cn], inst)
	}
	for _, cn := range clusterNames {
		insts := clusters[cn]
		fmt.Fprintf(w, "  subgraph %q {\n    label = %q;\n", "cluster_"+cn, fmt.Sprintf("rollout %s, batch %d", insts[0].Step.Rollout.Name, insts[0].Batch))
		for _, inst := range insts {
			fmt.Fprintf(w, "    %q [label = %q];\n", inst.Addr, inst.Addr+"\n"+inst.Step.Run.String())
		}
		fmt.Fprintln(w, "  }")
	}
	for _, name := range c.Names() {
		if IsJoin(c.Vertex(name)) {
			fmt.Fprintf(w, "  %q [shape = diamond, label = %q];\n", name, "all of "+strings.TrimSuffix(name, "[*]"))
		}
	}
	for _, name := range c.Names() {
		for _, d := range c.Dependencies(name) {
			fmt.Fprintf(w, "  %q -> %q;\n", d, name)
		}
	}
	fmt.Fprintln(w, "}")
	return w.Flush()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
