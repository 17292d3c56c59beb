// The plan as a person reads it (text) and as a program does (JSON):
// arguments in schema order, sensitive values hidden, unknown ones named by
// the steps they wait for.

package runner

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

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
	if p.PointOfNoReturn != "" {
		fmt.Fprintf(w, "Point of no return: %s. A failure before it returns the cluster to where it began; after it, the run halts with the cluster serving.\n", p.PointOfNoReturn)
	}
	if len(p.Preflights) > 0 {
		fmt.Fprintf(w, "\nPreflight, before anything changes (%d %s; a problem begins nothing):\n", len(p.Preflights), plural(len(p.Preflights), "check", "checks"))
		for _, ps := range p.Preflights {
			fmt.Fprintf(w, "   -  %s  %s\n", ps.Instance.Addr, ps.Instance.Step.Run)
			for _, line := range argLines(ps.Instance, ps) {
				fmt.Fprintf(w, "        %s\n", line)
			}
		}
		fmt.Fprintln(w)
	}
	var lastBatch string
	for i, ps := range p.Steps {
		inst := ps.Instance
		if r := inst.Step.Rollout; r != nil {
			b := fmt.Sprintf("%s/%d", r.Name, inst.Batch)
			if b != lastBatch {
				for _, gv := range p.Graph.gatesBefore(r, inst.Batch) {
					fmt.Fprintf(w, "\n   ||  %s  %s\n", gv.Addr, gv.Describe())
				}
				fmt.Fprintf(w, "\nrollout %q batch %d of %d: %s (on_failure = %s)\n", r.Name, inst.Batch, len(p.Graph.Items[r.Name]), strings.Join(p.Graph.Items[r.Name][inst.Batch-1], ", "), r.OnFailure)
				if g := r.Guard; g != nil && inst.Batch == 1 {
					fmt.Fprintf(w, "      guard: %s every %s, %s; broken -> on_failure\n", g.Source(), g.Interval, g.Budgets())
				}
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
		if inst.Addr == p.PointOfNoReturn {
			fmt.Fprintf(w, "        ^ point of no return: from here the new state is the truth\n")
		}
	}
	if len(p.Verifies) > 0 {
		fmt.Fprintf(w, "\nVerify, once the run has finished (%d %s of the end state; upshift verify runs them alone):\n", len(p.Verifies), plural(len(p.Verifies), "check", "checks"))
		for _, ps := range p.Verifies {
			fmt.Fprintf(w, "   -  %s  %s\n", ps.Instance.Addr, ps.Instance.Step.Run)
			for _, line := range argLines(ps.Instance, ps) {
				fmt.Fprintf(w, "        %s\n", line)
			}
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
func argLines(inst *StepInstance, ps *PlannedStep) []string {
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
		} else if v.Type() == cty.String && !v.IsKnown() {
			// A template over an unknown keeps what it knows: the
			// backup folder before its run id.
			if prefix := v.Range().StringPrefix(); prefix != "" {
				return strconv.Quote(prefix) + "… (" + what + ")"
			}
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
	case ty == cty.String && !v.IsMarked():
		// Most are names and paths, which hclwrite would write as they
		// are, between quotes; it builds tokens for each, a third of
		// rendering a 10,000-node plan.
		if s := v.AsString(); plainString(s) {
			return `"` + s + `"`
		}
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

// plainString reports whether hclwrite writes s quoted as it is: printable
// ASCII, with no quote, backslash or template introducer (${, %{) to
// escape.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e || c == '"' || c == '\\':
			return false
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			return false
		}
	}
	return true
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
// PlanFormatVersion is plan --json's format version (docs/json.md).
const PlanFormatVersion = 1

type jsonPlan struct {
	FormatVersion   int           `json:"format_version"`
	Playbook        string        `json:"playbook"`
	PointOfNoReturn string        `json:"point_of_no_return,omitempty"`
	Preflight       []jsonStep    `json:"preflight,omitempty"`
	Verify          []jsonStep    `json:"verify,omitempty"`
	Steps           []jsonStep    `json:"steps"`
	Rollouts        []jsonRollout `json:"rollouts,omitempty"`
}

type jsonRollout struct {
	Name      string     `json:"name"`
	OnFailure string     `json:"on_failure"`
	Batches   [][]string `json:"batches"`
	Gates     []jsonGate `json:"gates,omitempty"`
}

// jsonGate is a gate in plan --json: before_batch is the batch it
// precedes; bake_seconds is 0 for a gate that waits for an operator.
type jsonGate struct {
	Address     string  `json:"address"`
	BeforeBatch int     `json:"before_batch"`
	BeforeItem  string  `json:"before_item,omitempty"`
	Approval    bool    `json:"approval"`
	BakeSeconds float64 `json:"bake_seconds,omitempty"`
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
	out := jsonPlan{FormatVersion: PlanFormatVersion, Playbook: p.Graph.Playbook.Dir, PointOfNoReturn: p.PointOfNoReturn, Steps: []jsonStep{}}
	for _, r := range p.Graph.Playbook.Rollouts {
		jr := jsonRollout{Name: r.Name, OnFailure: r.OnFailure, Batches: p.Graph.Items[r.Name]}
		for _, gv := range p.Graph.Gates {
			if gv.Rollout == r {
				jr.Gates = append(jr.Gates, jsonGate{Address: gv.Addr, BeforeBatch: gv.Batch, BeforeItem: gv.Gate.Before, Approval: gv.Gate.Approval(), BakeSeconds: gv.Gate.Bake.Seconds()})
			}
		}
		out.Rollouts = append(out.Rollouts, jr)
	}
	for i, ps := range p.Preflights {
		js, err := jsonStepOf(p.Graph, i, ps, []string{})
		if err != nil {
			return err
		}
		out.Preflight = append(out.Preflight, js)
	}
	for i, ps := range p.Verifies {
		js, err := jsonStepOf(p.Graph, i, ps, []string{})
		if err != nil {
			return err
		}
		out.Verify = append(out.Verify, js)
	}
	for i, ps := range p.Steps {
		js, err := jsonStepOf(p.Graph, i, ps, p.Graph.dependencies(ps.Instance.Addr))
		if err != nil {
			return err
		}
		out.Steps = append(out.Steps, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func jsonStepOf(g *Graph, i int, ps *PlannedStep, deps []string) (jsonStep, error) {
	inst := ps.Instance
	js := jsonStep{Index: i + 1, Address: inst.Addr, Step: inst.Step.Name, Action: inst.Step.Run.String(), Batch: inst.Batch, Args: map[string]json.RawMessage{}, KnownAfter: ps.KnownAfter, DependsOn: deps}
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
				return js, err
			}
			js.Args[a.name] = b
		}
	}
	return js, nil
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

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// WriteSummary renders what an operator approves before a run changes
// anything: the steps, each rollout's batches with their items and the
// gates between them, and the point of no return.
func (p *Plan) WriteSummary(out io.Writer) error {
	w := bufio.NewWriter(out)
	pb := p.Graph.Playbook
	fmt.Fprintf(w, "Plan: %d %s", len(p.Steps), plural(len(p.Steps), "step", "steps"))
	if len(p.Preflights) > 0 {
		fmt.Fprintf(w, " after %d preflight %s", len(p.Preflights), plural(len(p.Preflights), "check", "checks"))
	}
	fmt.Fprintln(w, ".")
	for _, r := range pb.Rollouts {
		batches := p.Graph.Items[r.Name]
		fmt.Fprintf(w, "  rollout %q: %d items in %d %s (on_failure = %s)\n", r.Name, countItems(batches), len(batches), plural(len(batches), "batch", "batches"), r.OnFailure)
		for bi, keys := range batches {
			for _, gv := range p.Graph.gatesBefore(r, bi+1) {
				fmt.Fprintf(w, "    || %s\n", gv.Describe())
			}
			shown := keys
			if len(shown) > 8 {
				shown = append(append([]string(nil), keys[:8]...), fmt.Sprintf("and %d more", len(keys)-8))
			}
			fmt.Fprintf(w, "    batch %d: %s\n", bi+1, strings.Join(shown, ", "))
		}
	}
	if p.PointOfNoReturn != "" {
		fmt.Fprintf(w, "  point of no return: %s (a failure before it returns the cluster to where it began; after it, the run halts with the cluster serving)\n", p.PointOfNoReturn)
	}
	return w.Flush()
}
