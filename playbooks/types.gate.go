package playbooks

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Gate is a pause inside a rollout, between its batches or before one of
// its items, read as Argo Rollouts' pause steps are: without bake it waits
// for an operator (`upshift run` again, or `upshift approve`); with bake it
// waits that long, watching nothing but the clock and the rollout's guard,
// then lets the next batch begin.
type Gate struct {
	// Name is the gate's label ("canary"), or for a shorthand
	// "after batch N" / "bake after batch N".
	Name string
	// AfterBatch is the batch the gate follows (1-based); 0 when Before is
	// set instead.
	AfterBatch int
	// Before is the key of the item the gate precedes; "" when AfterBatch
	// is set.
	Before string
	// Bake is how long to wait before the next batch; 0 waits for an
	// operator.
	Bake      time.Duration
	DeclRange hcl.Range
}

// Approval tells whether the gate waits for an operator rather than a
// clock.
func (g *Gate) Approval() bool { return g.Bake == 0 }

// Where says where the gate stands, for plans and messages.
func (g *Gate) Where() string {
	if g.Before != "" {
		return fmt.Sprintf("before item %q", g.Before)
	}
	return fmt.Sprintf("after batch %d", g.AfterBatch)
}

var gateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "after_batch"},
		{Name: "before"},
		{Name: "bake"},
	},
}

// decodeGate decodes a rollout's gate block: exactly one of after_batch and
// before, and bake when the gate waits for a time rather than an operator.
func decodeGate(b *hcl.Block) (*Gate, hcl.Diagnostics) {
	g := &Gate{Name: b.Labels[0], DeclRange: b.DefRange}
	content, diags := b.Body.Content(gateSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	ab, hasAfter := content.Attributes["after_batch"]
	bf, hasBefore := content.Attributes["before"]
	switch {
	case hasAfter && hasBefore:
		return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Conflicting gate position", Detail: "A gate stands either after a batch (after_batch = 1) or before an item (before = \"node-3\"), not both.", Subject: bf.NameRange.Ptr()})
	case !hasAfter && !hasBefore:
		return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Gate without a position", Detail: fmt.Sprintf("Gate %q needs after_batch = N (after the Nth batch) or before = \"ITEM\" (before that item begins).", g.Name), Subject: b.DefRange.Ptr()})
	case hasAfter:
		v, ds := ab.Expr.Value(nil)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			return nil, diags
		}
		n, ok := wholeNumber(v)
		if !ok || n < 1 {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid after_batch", Detail: "after_batch is the number of the batch the gate follows: a whole number of at least 1.", Subject: ab.Expr.Range().Ptr()})
		}
		g.AfterBatch = n
	default:
		diags = append(diags, decodeStaticString(bf, &g.Before)...)
	}
	if a, ok := content.Attributes["bake"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() && d == 0 {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid bake", Detail: "bake is how long to wait before going on, such as \"30s\"; leave it out for a gate that waits for an operator.", Subject: a.Expr.Range().Ptr()})
		}
		g.Bake = d
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return g, diags
}

// decodeGateShorthands turns a rollout's pause_after_batch = [1, 2] into
// approval gates named "after batch N", and bake = "30s" into a bake gate
// after every batch but the last (the batch count is known only with the
// items, so the runner drops those past the end), named "bake after batch
// N". A bake gate comes before an approval gate at the same place.
func decodeGateShorthands(content *hcl.BodyContent, r *Rollout) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if a, ok := content.Attributes["bake"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() && d > 0 {
			r.Bake = d
			r.BakeRange = a.Expr.Range()
		}
	}
	if a, ok := content.Attributes["pause_after_batch"]; ok {
		bad := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid pause_after_batch", Detail: "pause_after_batch lists the batches after which the rollout waits for an operator, such as [1].", Subject: a.Expr.Range().Ptr()}
		v, ds := a.Expr.Value(nil)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			return diags
		}
		if v.IsNull() || !v.IsKnown() || !(v.Type().IsTupleType() || v.Type().IsListType()) {
			return append(diags, bad)
		}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			n, ok := wholeNumber(e)
			if e.Type() != cty.Number || !ok || n < 1 {
				return append(diags, bad)
			}
			if !slices.Contains(r.PauseAfter, n) {
				r.PauseAfter = append(r.PauseAfter, n)
			}
		}
		r.PauseRange = a.Expr.Range()
	}
	return diags
}

// GatesFor lists the rollout's gates once its batch count is known: bake
// and pause_after_batch shorthands first at each place, then gate blocks in
// the order written. Shorthand gates past the last batch are dropped (bake
// stands between batches); a gate block's after_batch past the last is the
// caller's to report.
func (r *Rollout) GatesFor(batches int) []*Gate {
	var out []*Gate
	for b := 1; b < batches; b++ {
		if r.Bake > 0 {
			out = append(out, &Gate{Name: fmt.Sprintf("bake after batch %d", b), AfterBatch: b, Bake: r.Bake, DeclRange: r.BakeRange})
		}
		if slices.Contains(r.PauseAfter, b) {
			out = append(out, &Gate{Name: fmt.Sprintf("after batch %d", b), AfterBatch: b, DeclRange: r.PauseRange})
		}
	}
	return append(out, r.Gates...)
}

// Suggest returns ` (did you mean "x"?)` for the candidate closest to
// given, or "": the playbook's own spelling help, for the runner's
// messages about items.
func Suggest(given string, candidates []string) string { return suggest(given, candidates) }
