package playbooks

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

var stepSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "run", Required: true},
		{Name: "description"},
		{Name: "depends_on"},
		{Name: "for_each"},
		{Name: "when"},
		{Name: "timeout"},
		{Name: "always"},
		{Name: "point_of_no_return"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "with"}, {Type: "retry"}},
}

var retrySchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "attempts", Required: true},
		{Name: "delay"},
		{Name: "backoff"},
		{Name: "max_delay"},
	},
}

func (pb *Playbook) decodeStep(b *hcl.Block, rollout *Rollout, index int) (*Step, hcl.Diagnostics) {
	s := &Step{Name: b.Labels[0], Rollout: rollout, Index: index, DeclRange: b.DefRange, Retry: Retry{Attempts: 1, Backoff: 1}}
	diags := checkName("step", s.Name, b.LabelRanges[0])
	content, ds := b.Body.Content(stepSchema)
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}

	run, ds := pb.decodeActionRef(content.Attributes["run"].Expr)
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}
	s.Run = run

	for _, blk := range content.Blocks {
		switch blk.Type {
		case "with":
			if s.With != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate with block", Detail: fmt.Sprintf("A step has at most one with block; the first is at %s.", At(s.WithRange)), Subject: blk.DefRange.Ptr()})
				continue
			}
			s.With, s.WithRange = blk.Body, blk.DefRange
		case "retry":
			r, ds := decodeRetry(blk)
			diags = append(diags, ds...)
			s.Retry = r
		}
	}
	if a, ok := content.Attributes["description"]; ok {
		diags = append(diags, decodeStaticString(a, &s.Description)...)
	}
	if a, ok := content.Attributes["timeout"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		s.Timeout = d
	}
	if a, ok := content.Attributes["always"]; ok {
		v, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if v.Type() != cty.Bool || v.IsNull() {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid always", Detail: "always must be true or false.", Subject: a.Expr.Range().Ptr()})
			} else {
				s.Always = v.True()
			}
		}
	}
	if a, ok := content.Attributes["point_of_no_return"]; ok {
		v, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if v.Type() != cty.Bool || v.IsNull() {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid point_of_no_return", Detail: "point_of_no_return must be true or false.", Subject: a.Expr.Range().Ptr()})
			} else {
				s.PointOfNoReturn = v.True()
				s.ponrRange = a.NameRange
			}
		}
	}
	if a, ok := content.Attributes["for_each"]; ok {
		if rollout != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "for_each inside a rollout",
				Detail:   fmt.Sprintf("Step %q is inside rollout %q, which already runs it once per item of `over`; use each.value there instead of for_each.", s.Name, rollout.Name),
				Subject:  a.NameRange.Ptr(),
			})
		} else {
			s.ForEach = a.Expr
		}
	}
	if a, ok := content.Attributes["when"]; ok {
		s.When = a.Expr
	}
	if a, ok := content.Attributes["depends_on"]; ok {
		refs, ds := decodeDependsOn(a)
		diags = append(diags, ds...)
		s.DependsOn = refs
	}

	// References from expressions: these make edges, as in Terraform.
	var traversals []hcl.Traversal
	if s.With != nil {
		traversals = append(traversals, hcldec.Variables(s.With, s.Run.Action.Args.DecoderSpec())...)
	}
	if s.ForEach != nil {
		traversals = append(traversals, s.ForEach.Variables()...)
	}
	if s.When != nil {
		traversals = append(traversals, s.When.Variables()...)
	}
	inEach := rollout != nil || s.ForEach != nil
	for _, tr := range traversals {
		switch tr.RootName() {
		case "step":
			ref, ds := stepReference(tr)
			diags = append(diags, ds...)
			if ref != nil {
				s.References = append(s.References, *ref)
			}
		case "each":
			if !inEach {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  `Reference to "each" in a step without for_each`,
					Detail:   fmt.Sprintf("each.key and each.value exist only in a step with for_each or inside a rollout; step %q is neither.", s.Name),
					Subject:  tr.SourceRange().Ptr(),
				})
			}
		}
	}
	return s, diags
}

// decodeActionRef resolves `run = kind.name.action` statically.
func (pb *Playbook) decodeActionRef(expr hcl.Expression) (ActionRef, hcl.Diagnostics) {
	tr, diags := hcl.AbsTraversalForExpr(expr)
	bad := func(summary, detail string) (ActionRef, hcl.Diagnostics) {
		return ActionRef{}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: expr.Range().Ptr()}}
	}
	if diags.HasErrors() || len(tr) != 3 {
		return bad("Invalid run", "run names an action of a resource, as KIND.NAME.ACTION, for example load_balancer.front.drain.")
	}
	var parts []string
	for _, t := range tr {
		switch t := t.(type) {
		case hcl.TraverseRoot:
			parts = append(parts, t.Name)
		case hcl.TraverseAttr:
			parts = append(parts, t.Name)
		default:
			return bad("Invalid run", "run names an action of a resource, as KIND.NAME.ACTION, without index brackets.")
		}
	}
	kind := schema.Kind(parts[0])
	if !kind.Valid() {
		var kinds []string
		for _, k := range schema.Kinds {
			kinds = append(kinds, string(k))
		}
		return bad("Unknown resource kind", fmt.Sprintf("%q is not a resource kind%s. The kinds are %s.", parts[0], suggest(parts[0], kinds), joinQuoted(kinds)))
	}
	r, ok := pb.Resources[parts[0]+"."+parts[1]]
	if !ok {
		var names []string
		for _, x := range pb.Resources {
			if x.Kind == kind {
				names = append(names, x.Name)
			}
		}
		return bad("Reference to undeclared resource", fmt.Sprintf("No %s named %q is declared%s.", kind, parts[1], suggest(parts[1], names)))
	}
	a := r.Schema.Action(parts[2])
	if a == nil {
		names := r.Schema.ActionNames()
		hint := ""
		if isContractOnly(r.Schema) {
			hint = fmt.Sprintf(" Only the standard actions of a %s are known until `upshift init` has pinned plugin %q; a vendor's own actions need it.", kind, r.PluginName)
		}
		return bad("Unknown action", fmt.Sprintf("%s %q (plugin %q) has no action %q%s. Its actions are %s.%s", kind, r.Name, r.PluginName, parts[2], suggest(parts[2], names), joinQuoted(names), hint))
	}
	return ActionRef{Resource: r, Action: a, Range: expr.Range()}, nil
}

func stepReference(tr hcl.Traversal) (*Reference, hcl.Diagnostics) {
	if len(tr) < 2 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid step reference", Detail: "A step is referred to by name, as step.NAME.", Subject: tr.SourceRange().Ptr()}}
	}
	attr, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid step reference", Detail: "A step is referred to by name, as step.NAME.", Subject: tr.SourceRange().Ptr()}}
	}
	return &Reference{Kind: "step", Name: attr.Name, Range: tr.SourceRange()}, nil
}

func decodeDependsOn(a *hcl.Attribute) ([]Reference, hcl.Diagnostics) {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		return nil, diags
	}
	var refs []Reference
	for _, e := range exprs {
		tr, ds := hcl.AbsTraversalForExpr(e)
		if ds.HasErrors() || len(tr) != 2 || (tr.RootName() != "step" && tr.RootName() != "rollout") {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid depends_on", Detail: "depends_on lists steps and rollouts by address, such as step.backup or rollout.upgrade.", Subject: e.Range().Ptr()})
			continue
		}
		attr, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid depends_on", Detail: "depends_on lists whole steps and rollouts, without instance keys.", Subject: e.Range().Ptr()})
			continue
		}
		refs = append(refs, Reference{Kind: tr.RootName(), Name: attr.Name, Range: e.Range()})
	}
	return refs, diags
}

func decodeDuration(a *hcl.Attribute) (time.Duration, hcl.Diagnostics) {
	var s string
	if diags := decodeStaticString(a, &s); diags.HasErrors() {
		return 0, diags
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("Invalid %s", a.Name), Detail: fmt.Sprintf("%q is not a duration; write a number with a unit, such as \"90s\", \"2m\" or \"1h30m\".", s), Subject: a.Expr.Range().Ptr()}}
	}
	return d, nil
}

func decodeRetry(b *hcl.Block) (Retry, hcl.Diagnostics) {
	r := Retry{Attempts: 1, Backoff: 1}
	content, diags := b.Body.Content(retrySchema)
	if diags.HasErrors() {
		return r, diags
	}
	attempts := content.Attributes["attempts"]
	v, ds := attempts.Expr.Value(nil)
	diags = append(diags, ds...)
	if !ds.HasErrors() {
		n, ok := wholeNumber(v)
		if !ok || n < 1 || n > 100 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid retry attempts", Detail: "attempts is the total number of tries: a whole number from 1 to 100.", Subject: attempts.Expr.Range().Ptr()})
		} else {
			r.Attempts = n
		}
	}
	if a, ok := content.Attributes["delay"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		r.Delay = d
	}
	if a, ok := content.Attributes["max_delay"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		r.MaxDelay = d
	}
	if a, ok := content.Attributes["backoff"]; ok {
		v, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			f, ok := numberValue(v)
			if !ok || f < 1 || f > 10 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid retry backoff", Detail: "backoff multiplies each further delay: a number from 1 (constant delay) to 10.", Subject: a.Expr.Range().Ptr()})
			} else {
				r.Backoff = f
			}
		}
	}
	return r, diags
}

func wholeNumber(v cty.Value) (int, bool) {
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return 0, false
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		return 0, false
	}
	n, _ := bf.Int64()
	if n > 1<<31 || n < -(1<<31) {
		return 0, false
	}
	return int(n), true
}

// MaxBatchSize is the largest max_parallel or batch size a rollout takes.
const MaxBatchSize = 1000000

// numberTooLarge tells whether v is a number beyond MaxBatchSize (such as
// 1e38, which does not fit an int).
func numberTooLarge(v cty.Value) bool {
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return false
	}
	return v.AsBigFloat().Cmp(big.NewFloat(MaxBatchSize)) > 0
}

func numberValue(v cty.Value) (float64, bool) {
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

var rolloutSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "over", Required: true},
		{Name: "key"},
		{Name: "description"},
		{Name: "max_parallel"},
		{Name: "batches"},
		{Name: "on_failure"},
		{Name: "depends_on"},
		{Name: "pause_after_batch"},
		{Name: "bake"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "step", LabelNames: []string{"name"}}, {Type: "guard"}, {Type: "gate", LabelNames: []string{"name"}}},
}

func (pb *Playbook) decodeRollout(b *hcl.Block) (*Rollout, hcl.Diagnostics) {
	r := &Rollout{Name: b.Labels[0], DeclRange: b.DefRange, OnFailure: OnFailureHalt}
	diags := checkName("rollout", r.Name, b.LabelRanges[0])
	content, ds := b.Body.Content(rolloutSchema)
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}
	r.Over = content.Attributes["over"].Expr
	for _, tr := range r.Over.Variables() {
		if tr.RootName() == "step" {
			if ref, ds := stepReference(tr); ref != nil {
				r.References = append(r.References, *ref)
			} else {
				diags = append(diags, ds...)
			}
		}
	}
	if a, ok := content.Attributes["key"]; ok {
		r.Key = a.Expr
	}
	if a, ok := content.Attributes["description"]; ok {
		diags = append(diags, decodeStaticString(a, &r.Description)...)
	}
	if a, ok := content.Attributes["on_failure"]; ok {
		diags = append(diags, decodeStaticString(a, &r.OnFailure)...)
		switch r.OnFailure {
		case OnFailureHalt, OnFailureRollback, OnFailurePause:
		default:
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid on_failure", Detail: fmt.Sprintf("on_failure is %q, %q or %q; not %q.", OnFailureHalt, OnFailureRollback, OnFailurePause, r.OnFailure), Subject: a.Expr.Range().Ptr()})
		}
	}
	if a, ok := content.Attributes["depends_on"]; ok {
		refs, ds := decodeDependsOn(a)
		diags = append(diags, ds...)
		r.DependsOn = refs
	}
	mp, hasMP := content.Attributes["max_parallel"]
	bs, hasBatches := content.Attributes["batches"]
	switch {
	case hasMP && hasBatches:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Conflicting batch settings", Detail: "Set either max_parallel (every batch the same size) or batches (a size per batch), not both.", Subject: bs.NameRange.Ptr()})
	case hasMP:
		v, ds := mp.Expr.Value(pb.EvalContext(nil))
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			v, _ = v.Unmark()
			n, ok := wholeNumber(v)
			if numberTooLarge(v) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid max_parallel", Detail: fmt.Sprintf("max_parallel is %s, too large: it is how many items run at once, a whole number from 1 to %d.", v.AsBigFloat().Text('g', 10), MaxBatchSize), Subject: mp.Expr.Range().Ptr()})
			} else if !ok || n < 1 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid max_parallel", Detail: "max_parallel is how many items run at once: a whole number of at least 1.", Subject: mp.Expr.Range().Ptr()})
			} else {
				r.Batches = []BatchSize{{Count: n, Range: mp.Expr.Range()}}
			}
		}
	case hasBatches:
		sizes, ds := decodeBatches(bs, pb.EvalContext(nil))
		diags = append(diags, ds...)
		r.Batches = sizes
	}
	if len(r.Batches) == 0 {
		r.Batches = []BatchSize{{Count: 1, Range: b.DefRange}}
	}
	diags = append(diags, decodeGateShorthands(content, r)...)
	var stepBlocks []*hcl.Block
	for _, blk := range content.Blocks {
		if blk.Type == "gate" {
			g, ds := decodeGate(blk)
			diags = append(diags, ds...)
			if g == nil {
				continue
			}
			for _, other := range r.Gates {
				if other.Name == g.Name {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate gate", Detail: fmt.Sprintf("Rollout %q already has a gate %q, at %s.", r.Name, g.Name, At(other.DeclRange)), Subject: blk.DefRange.Ptr()})
				}
			}
			r.Gates = append(r.Gates, g)
			continue
		}
		if blk.Type != "guard" {
			stepBlocks = append(stepBlocks, blk)
			continue
		}
		if r.Guard != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate guard block", Detail: fmt.Sprintf("A rollout has at most one guard block; the first is at %s.", At(r.Guard.DeclRange)), Subject: blk.DefRange.Ptr()})
			continue
		}
		g, ds := pb.decodeGuard(blk)
		diags = append(diags, ds...)
		r.Guard = g
	}
	for i, sb := range stepBlocks {
		s, ds := pb.decodeStep(sb, r, i)
		diags = append(diags, ds...)
		if s != nil {
			r.Steps = append(r.Steps, s)
		}
	}
	if len(stepBlocks) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Empty rollout", Detail: fmt.Sprintf("Rollout %q has no steps; add step blocks to run for each item.", r.Name), Subject: b.DefRange.Ptr()})
	}
	return r, diags
}

func decodeBatches(a *hcl.Attribute, ctx *hcl.EvalContext) ([]BatchSize, hcl.Diagnostics) {
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid batches", Detail: detail + ` batches is a list of sizes, each a whole number of items or a percentage such as "50%"; the last size repeats.`, Subject: a.Expr.Range().Ptr()}}
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		return nil, diags
	}
	v, _ = v.Unmark()
	if v.IsNull() || !v.IsKnown() || !(v.Type().IsTupleType() || v.Type().IsListType()) || v.LengthInt() == 0 {
		return nil, bad("batches must be a non-empty list.")
	}
	var out []BatchSize
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		switch {
		case e.Type() == cty.Number:
			n, ok := wholeNumber(e)
			if numberTooLarge(e) {
				return nil, bad(fmt.Sprintf("%s is too large: a batch holds at most %d items.", e.AsBigFloat().Text('g', 10), MaxBatchSize))
			}
			if !ok || n < 1 {
				return nil, bad(fmt.Sprintf("%s is not a batch size.", e.AsBigFloat().String()))
			}
			out = append(out, BatchSize{Count: n, Range: a.Expr.Range()})
		case e.Type() == cty.String && !e.IsNull():
			s := e.AsString()
			var pct int
			if !strings.HasSuffix(s, "%") {
				return nil, bad(fmt.Sprintf("%q is not a batch size.", s))
			}
			if _, err := fmt.Sscanf(strings.TrimSuffix(s, "%"), "%d", &pct); err != nil || pct < 1 || pct > 100 || fmt.Sprintf("%d%%", pct) != s {
				return nil, bad(fmt.Sprintf("%q is not a percentage from 1%% to 100%%.", s))
			}
			out = append(out, BatchSize{Percent: pct, Range: a.Expr.Range()})
		default:
			return nil, bad(fmt.Sprintf("An element is %s.", typeString(e.Type())))
		}
	}
	return out, nil
}

// checkReferences verifies that every step and rollout reference names
// something that exists and can be depended on.
func (pb *Playbook) checkReferences() hcl.Diagnostics {
	var diags hcl.Diagnostics
	stepNames := make([]string, 0, len(pb.Steps))
	for _, s := range pb.Steps {
		stepNames = append(stepNames, s.Name)
	}
	var rolloutNames []string
	for _, r := range pb.Rollouts {
		rolloutNames = append(rolloutNames, r.Name)
	}
	check := func(from string, fromRollout *Rollout, fromIndex int, ref Reference) {
		switch ref.Kind {
		case "rollout":
			r := pb.Rollout(ref.Name)
			if r == nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared rollout", Detail: fmt.Sprintf("%s refers to rollout %q, which is not declared%s.", from, ref.Name, suggest(ref.Name, rolloutNames)), Subject: ref.Range.Ptr()})
			} else if r == fromRollout {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Self-referential rollout", Detail: fmt.Sprintf("%s is part of rollout %q and cannot depend on it.", from, r.Name), Subject: ref.Range.Ptr()})
			}
		case "step":
			target := pb.Step(ref.Name)
			switch {
			case target == nil:
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared step", Detail: fmt.Sprintf("%s refers to step %q, which is not declared%s.", from, ref.Name, suggest(ref.Name, stepNames)), Subject: ref.Range.Ptr()})
			case from == target.Address():
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Self-referential step", Detail: fmt.Sprintf("%s refers to itself.", from), Subject: ref.Range.Ptr()})
			case fromRollout != nil && target.Rollout == fromRollout && target.Index > fromIndex:
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to a later step", Detail: fmt.Sprintf("%s refers to %s, which runs after it in rollout %q. Steps of a rollout run in the order written.", from, target.Address(), fromRollout.Name), Subject: ref.Range.Ptr()})
			case fromRollout != nil && target.Rollout != nil && target.Rollout != fromRollout:
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference into another rollout", Detail: fmt.Sprintf("%s refers to %s of rollout %q. Depend on the whole rollout instead: depends_on = [rollout.%s].", from, target.Address(), target.Rollout.Name, target.Rollout.Name), Subject: ref.Range.Ptr()})
			}
		}
	}
	for _, s := range pb.Steps {
		for _, ref := range append(append([]Reference(nil), s.DependsOn...), s.References...) {
			check(s.Address(), s.Rollout, s.Index, ref)
		}
	}
	for _, r := range pb.Rollouts {
		for _, ref := range append(append([]Reference(nil), r.DependsOn...), r.References...) {
			check(r.Address(), nil, -1, ref)
		}
		for _, ref := range r.References {
			if t := pb.Step(ref.Name); t != nil && t.Rollout == r {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Rollout over its own step", Detail: fmt.Sprintf("The items of rollout %q cannot come from its own step %s.", r.Name, t.Address()), Subject: ref.Range.Ptr()})
			}
		}
	}
	return diags
}
