package playbooks

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// Scope is what an expression can see beyond variables, locals and
// resources: the current item of a for_each or rollout, and the values of
// the steps it may refer to.
type Scope struct {
	// Each is the object {key, value} of the current item, or cty.NilVal
	// outside a for_each step or rollout.
	Each cty.Value
	// Steps maps a step name to its value: an object {result = ...} for a
	// single instance, or an object keyed by instance key whose attributes
	// are such objects.
	Steps map[string]cty.Value
}

// EvalContext builds the evaluation context for an expression in scope
// (nil for none). Variables, locals, resources and functions are shared by
// every context once resources are decoded; only each and step differ, in a
// child context, so planning thousands of instances stays cheap.
func (pb *Playbook) EvalContext(scope *Scope) *hcl.EvalContext {
	base := pb.base
	if base == nil { // still loading: variables or locals may change
		base = pb.baseContext()
	}
	if scope == nil {
		return base
	}
	child := base.NewChild()
	child.Variables = map[string]cty.Value{"step": objectOrEmpty(scope.Steps)}
	if scope.Each != cty.NilVal {
		child.Variables["each"] = scope.Each
	}
	return child
}

func (pb *Playbook) baseContext() *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   objectOrEmpty(pb.varValues),
		"local": objectOrEmpty(pb.localValues),
		"path": cty.ObjectVal(map[string]cty.Value{
			"playbook": cty.StringVal(pb.Dir),
			"cwd":      cty.StringVal(cwd()),
		}),
		"run": pb.runValue(),
	}
	byKind := map[schema.Kind]map[string]cty.Value{}
	for _, r := range pb.Resources {
		if byKind[r.Kind] == nil {
			byKind[r.Kind] = map[string]cty.Value{}
		}
		byKind[r.Kind][r.Name] = r.value()
	}
	for _, k := range schema.Kinds {
		vars[string(k)] = objectOrEmpty(byKind[k])
	}
	return &hcl.EvalContext{Variables: vars, Functions: Functions(pb.Dir)}
}

// runValue is `run` in expressions: {id = the run's id}, unknown until the
// runner has begun or resumed a run (in a plan: "known after the run
// starts").
func (pb *Playbook) runValue() cty.Value {
	id := cty.UnknownVal(cty.String)
	if pb.runID != "" {
		id = cty.StringVal(pb.runID)
	}
	return cty.ObjectVal(map[string]cty.Value{"id": id})
}

// SetRunID makes run.id known to the expressions evaluated from now on (a
// step's with and when; variables, locals and resources were evaluated
// when the playbook was loaded, and saw it unknown). The runner calls it
// once it has begun or resumed a run, before any step is evaluated: it must
// not be called while expressions are being evaluated.
func (pb *Playbook) SetRunID(id string) {
	pb.runID = id
	if pb.base != nil {
		pb.base.Variables["run"] = pb.runValue()
	}
}

// RunID is the id given by SetRunID, or "".
func (pb *Playbook) RunID() string { return pb.runID }

func (r *Resource) value() cty.Value {
	attrs := map[string]cty.Value{
		"name":   cty.StringVal(r.Name),
		"plugin": cty.StringVal(r.PluginName),
	}
	if r.Kind == schema.KindNodePool {
		attrs["nodes"] = r.Nodes
	}
	return cty.ObjectVal(attrs)
}

func objectOrEmpty(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

func cwd() string {
	d, err := os.Getwd()
	if err != nil {
		return "."
	}
	return d
}

// suggest returns ` (did you mean "x"?)` for the closest candidate, or "".
func suggest(given string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(given, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(` (did you mean %q?)`, best)
}

func typeString(ty cty.Type) string {
	if ty == cty.DynamicPseudoType {
		return "any"
	}
	return ty.FriendlyName()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// joinQuoted renders names as "a", "b" and "c".
func joinQuoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return "none"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// suggestNames adds "Did you mean var.nodes?" to HCL's "Unsupported
// attribute" errors on a misspelt variable, local or resource name, such as
// var.nodez.
func (pb *Playbook) suggestNames(diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Summary != "Unsupported attribute" || d.Expression == nil || strings.Contains(d.Detail, "Did you mean") {
			continue
		}
		te, ok := d.Expression.(interface{ AsTraversal() hcl.Traversal })
		if !ok {
			continue
		}
		tr := te.AsTraversal()
		if len(tr) < 2 {
			continue
		}
		attr, ok := tr[1].(hcl.TraverseAttr)
		if !ok || d.Subject == nil || *d.Subject != attr.SrcRange {
			continue
		}
		root := tr.RootName()
		var names []string
		switch root {
		case "var":
			names = pb.variableNames()
		case "local":
			names = sortedKeys(pb.Locals)
		default:
			for _, r := range pb.Resources {
				if string(r.Kind) == root {
					names = append(names, r.Name)
				}
			}
			sort.Strings(names)
		}
		if s := suggest(attr.Name, names); s != "" {
			best := strings.TrimSuffix(strings.TrimPrefix(s, ` (did you mean "`), `"?)`)
			d.Detail += fmt.Sprintf(" Did you mean %s.%s?", root, best)
		}
	}
}
