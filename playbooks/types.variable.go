package playbooks

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvPrefix is the prefix of environment variables that set playbook
// variables: UPSHIFT_VAR_nodes sets var.nodes.
const EnvPrefix = "UPSHIFT_VAR_"

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

func decodeVariable(b *hcl.Block) (*Variable, hcl.Diagnostics) {
	name := b.Labels[0]
	diags := checkName("variable", name, b.LabelRanges[0])
	v := &Variable{Name: name, Type: cty.DynamicPseudoType, DeclRange: b.DefRange}
	content, ds := b.Body.Content(variableSchema)
	diags = append(diags, ds...)
	var defaults *typeexpr.Defaults
	if a, ok := content.Attributes["type"]; ok {
		ty, def, ds := typeexpr.TypeConstraintWithDefaults(a.Expr)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			v.Type, defaults = ty, def
		}
	}
	if a, ok := content.Attributes["description"]; ok {
		diags = append(diags, decodeStaticString(a, &v.Description)...)
	}
	if a, ok := content.Attributes["sensitive"]; ok {
		val, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if val.Type() != cty.Bool || val.IsNull() {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid sensitive value", Detail: "sensitive must be true or false.", Subject: a.Expr.Range().Ptr()})
			} else {
				v.Sensitive = val.True()
			}
		}
	}
	if a, ok := content.Attributes["default"]; ok {
		val, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if defaults != nil {
				val = defaults.Apply(val)
			}
			conv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("The default value of variable %q does not fit its type: %s.", name, err),
					Subject:  a.Expr.Range().Ptr(),
				})
				v.Default = cty.DynamicVal // reported; not "missing" too
			} else {
				v.Default = conv
			}
		}
	}
	for _, vb := range content.Blocks {
		vc, ds := vb.Body.Content(validationSchema)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			continue
		}
		v.Validations = append(v.Validations, &Validation{
			Condition:    vc.Attributes["condition"].Expr,
			ErrorMessage: vc.Attributes["error_message"].Expr,
			DeclRange:    vb.DefRange,
		})
	}
	v.typeDefaults = defaults
	return v, diags
}

func decodeStaticString(a *hcl.Attribute, into *string) hcl.Diagnostics {
	val, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return diags
	}
	if val.Type() != cty.String || val.IsNull() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid %s", a.Name),
			Detail:   fmt.Sprintf("%s must be a string literal.", a.Name),
			Subject:  a.Expr.Range().Ptr(),
		}}
	}
	*into = val.AsString()
	return nil
}

// rawValue is a variable value given outside the playbook, still to be
// converted to the variable's type.
type rawValue struct {
	expr   hcl.Expression // set for values from files and flags parsed as HCL
	value  cty.Value      // set for values taken as plain strings
	source string
	rng    hcl.Range
}

// assignVariables sets each variable's value. Later sources win: default,
// then UPSHIFT_VAR_ environment variables, then -var-file files in order,
// then -var flags in order, as Terraform users expect.
func (pb *Playbook) assignVariables(p *Parser, opts LoadOptions) hcl.Diagnostics {
	var diags hcl.Diagnostics
	given := map[string]rawValue{}

	for _, kv := range opts.Env {
		if !strings.HasPrefix(kv, EnvPrefix) {
			continue
		}
		name, val, _ := strings.Cut(strings.TrimPrefix(kv, EnvPrefix), "=")
		if _, ok := pb.Variables[name]; !ok {
			continue // the environment may hold variables for other playbooks
		}
		given[name] = rawFromString(name, val, "environment variable "+EnvPrefix+name, pb.Variables[name])
	}
	for _, path := range opts.VarFiles {
		f := p.p.Files()[path]
		if f == nil {
			src, err := p.read(path)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read variables file", Detail: fmt.Sprintf("The -var-file %s cannot be read: %s.", path, err)})
				continue
			}
			var ds hcl.Diagnostics
			f, ds = p.ParseSource(src, path)
			diags = append(diags, ds...)
			if ds.HasErrors() {
				continue
			}
		}
		if f == nil {
			continue
		}
		attrs, ds := f.Body.JustAttributes()
		diags = append(diags, ds...)
		for name, a := range attrs {
			if _, ok := pb.Variables[name]; !ok {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Value for undeclared variable",
					Detail:   fmt.Sprintf("The file %s sets %q, but the playbook declares no variable of that name%s.", path, name, suggest(name, pb.variableNames())),
					Subject:  a.NameRange.Ptr(),
				})
				continue
			}
			given[name] = rawValue{expr: a.Expr, source: path, rng: a.Expr.Range()}
		}
	}
	for _, flag := range opts.Vars {
		name, val, ok := strings.Cut(flag, "=")
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid -var option", Detail: fmt.Sprintf("The -var option %q is not of the form name=value.", flag)})
			continue
		}
		v, declared := pb.Variables[name]
		if !declared {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Value for undeclared variable", Detail: fmt.Sprintf("A -var option sets %q, but the playbook declares no variable of that name%s.", name, suggest(name, pb.variableNames()))})
			continue
		}
		given[name] = rawFromString(name, val, "-var "+name, v)
	}

	for _, name := range pb.variableNames() {
		v := pb.Variables[name]
		raw, ok := given[name]
		switch {
		case ok:
			val, ds := raw.evaluate(v)
			diags = append(diags, ds...)
			if ds.HasErrors() {
				continue
			}
			v.Value = val
			v.valueExpr = raw.expr
		case v.Default != cty.NilVal:
			v.Value = v.Default
			if !v.Default.IsKnown() {
				continue // its invalid default was reported
			}
		default:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "No value for required variable",
				Detail:   fmt.Sprintf("Variable %q has no default, so it must be set with -var, -var-file or %s%s.", name, EnvPrefix, name),
				Subject:  v.DeclRange.Ptr(),
			})
			continue
		}
	}
	if diags.HasErrors() {
		return diags
	}
	pb.varValues = map[string]cty.Value{}
	for name, v := range pb.Variables {
		val := v.Value
		if v.Sensitive {
			val = val.Mark(SensitiveMark)
		}
		pb.varValues[name] = val
	}
	return diags
}

// validateVariables runs every validation block once each variable has its
// value. A condition may refer only to its own variable, so the conditions
// are independent and run on every core: over a 1,000-node list each one
// walks the whole list, and cty copies the list into most function calls.
// Diagnostics come back in declaration order whatever finished first.
func (pb *Playbook) validateVariables() hcl.Diagnostics {
	type job struct {
		v   *Variable
		val *Validation
	}
	var jobs []job
	for _, name := range pb.variableNames() {
		v := pb.Variables[name]
		for _, val := range v.Validations {
			jobs = append(jobs, job{v, val})
		}
	}
	out := make([]hcl.Diagnostics, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = j.val.check(j.v, pb.varValues[j.v.Name], pb.Dir)
		}()
	}
	wg.Wait()
	var diags hcl.Diagnostics
	for _, ds := range out {
		diags = append(diags, ds...)
	}
	return diags
}

func rawFromString(name, s, source string, v *Variable) rawValue {
	// A string variable takes the text as it is; anything else is parsed as
	// an HCL expression, so UPSHIFT_VAR_nodes='[{name="a"}]' works.
	if v.Type == cty.String {
		return rawValue{value: cty.StringVal(s), source: source}
	}
	expr, diags := hclsyntax.ParseExpression([]byte(s), source, hcl.InitialPos)
	if diags.HasErrors() {
		return rawValue{value: cty.StringVal(s), source: source}
	}
	return rawValue{expr: expr, source: source, rng: expr.Range()}
}

func (r rawValue) evaluate(v *Variable) (cty.Value, hcl.Diagnostics) {
	val := r.value
	if r.expr != nil {
		var diags hcl.Diagnostics
		val, diags = r.expr.Value(&hcl.EvalContext{Functions: Functions(".")})
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
	}
	if v.typeDefaults != nil {
		val = v.typeDefaults.Apply(val)
	}
	conv, err := convert.Convert(val, v.Type)
	if err != nil {
		d := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value for variable",
			Detail:   fmt.Sprintf("The value for variable %q from %s does not fit its type %s: %s.", v.Name, r.source, typeString(v.Type), err),
		}
		if r.expr != nil {
			d.Subject = r.rng.Ptr()
		} else {
			d.Subject = v.DeclRange.Ptr()
		}
		return cty.NilVal, hcl.Diagnostics{d}
	}
	return conv, nil
}

func (val *Validation) check(v *Variable, value cty.Value, dir string) hcl.Diagnostics {
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.Name: value})},
		Functions: Functions(dir),
	}
	res, diags := val.Condition.Value(ctx)
	if diags.HasErrors() {
		return diags
	}
	res, _ = res.Unmark()
	if res.Type() != cty.Bool || res.IsNull() || !res.IsKnown() {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid validation condition", Detail: "A validation condition must be true or false.", Subject: val.Condition.Range().Ptr()}}
	}
	if res.True() {
		return nil
	}
	msg, ds := val.ErrorMessage.Value(ctx)
	detail := fmt.Sprintf("The value of variable %q is not valid.", v.Name)
	if !ds.HasErrors() {
		msg, _ = msg.Unmark()
		if msg.Type() == cty.String && !msg.IsNull() && msg.IsKnown() {
			detail = msg.AsString()
		}
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Invalid value for variable",
		Detail:   detail + fmt.Sprintf("\n\n(Checked by the validation rule on line %d.)", val.DeclRange.Start.Line),
		Subject:  v.DeclRange.Ptr(),
	}}
}

func (pb *Playbook) variableNames() []string {
	names := make([]string, 0, len(pb.Variables))
	for n := range pb.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// evaluateLocals evaluates locals in dependency order; a local may refer to
// variables and to other locals, not to steps.
func (pb *Playbook) evaluateLocals() hcl.Diagnostics {
	var diags hcl.Diagnostics
	pb.localValues = map[string]cty.Value{}
	// One context for every local: each local sees, under local, only the
	// locals it refers to (rebuilding the whole local object for each of n
	// locals made validation quadratic).
	base := pb.baseContext()
	state := map[string]int{} // 0 new, 1 in progress, 2 done
	var visit func(l *Local, chain []string) bool
	visit = func(l *Local, chain []string) bool {
		switch state[l.Name] {
		case 2:
			return true
		case 1:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cycle in local values",
				Detail:   fmt.Sprintf("Local values refer to each other in a cycle: %s.", strings.Join(append(chain, "local."+l.Name), " -> ")),
				Subject:  l.DeclRange.Ptr(),
			})
			return false
		}
		state[l.Name] = 1
		for _, tr := range l.Expr.Variables() {
			if tr.RootName() != "local" || len(tr) < 2 {
				continue
			}
			attr, ok := tr[1].(hcl.TraverseAttr)
			if !ok {
				continue
			}
			dep, ok := pb.Locals[attr.Name]
			if !ok {
				continue // reported when the expression is evaluated
			}
			if !visit(dep, append(chain, "local."+l.Name)) {
				state[l.Name] = 2
				return false
			}
		}
		val, ds := l.Expr.Value(localsContext(base, l, pb.localValues))
		diags = append(diags, ds...)
		if ds.HasErrors() {
			val = cty.DynamicVal
		}
		l.Value = val
		pb.localValues[l.Name] = val
		state[l.Name] = 2
		return true
	}
	names := make([]string, 0, len(pb.Locals))
	for n := range pb.Locals {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if state[n] == 0 {
			visit(pb.Locals[n], nil)
		}
	}
	return diags
}

// localsContext is the context for evaluating l: base with local holding
// the values of the locals l refers to. An expression that uses local as a
// whole (not local.name) sees every local evaluated so far.
func localsContext(base *hcl.EvalContext, l *Local, values map[string]cty.Value) *hcl.EvalContext {
	refs := map[string]cty.Value{}
	for _, tr := range l.Expr.Variables() {
		if tr.RootName() != "local" {
			continue
		}
		attr, ok := (hcl.TraverseAttr{}), false
		if len(tr) >= 2 {
			attr, ok = tr[1].(hcl.TraverseAttr)
		}
		if !ok {
			refs = values
			break
		}
		if v, ok := values[attr.Name]; ok {
			refs[attr.Name] = v
		}
	}
	vars := make(map[string]cty.Value, len(base.Variables))
	for k, v := range base.Variables {
		vars[k] = v
	}
	vars["local"] = objectOrEmpty(refs)
	return &hcl.EvalContext{Variables: vars, Functions: base.Functions}
}
