package playbooks

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// checkNodeMembers reports each node object that misses what the pool's
// plugin reads from it (schema.Object.CheckMembers), so validate and plan
// refuse what run would refuse only once the plugin is configured. The
// diagnostic points at the node where it is written: its object in the
// variables file when nodes = var.x and the file gives x as a list.
func (pb *Playbook) checkNodeMembers(r *Resource, pl *PluginBlock, node *schema.Object, nodes cty.Value, expr hcl.Expression) hcl.Diagnostics {
	nodes, _ = nodes.Unmark()
	elems := pb.nodeExprs(expr, nodes.LengthInt())
	var diags hcl.Diagnostics
	i := 0
	for it := nodes.ElementIterator(); it.Next(); i++ {
		_, n := it.Element()
		probs := node.CheckMembers(n)
		if len(probs) == 0 {
			continue
		}
		nv, _ := n.Unmark()
		label := fmt.Sprintf("Node %d", i)
		if nv.Type().IsObjectType() && nv.Type().HasAttribute("name") {
			label = fmt.Sprintf("Node %q", nv.GetAttr("name").AsString())
		}
		var missing, other []string
		for _, p := range probs {
			if p.Message == "is required" {
				missing = append(missing, p.Path)
			} else {
				other = append(other, p.Path+" "+p.Message)
			}
		}
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, "has no "+joinList(missing, "or"))
		}
		if len(other) > 0 {
			parts = append(parts, "has "+strings.Join(other, ", "))
		}
		var required []string
		for _, a := range node.Attributes {
			if a.Required {
				required = append(required, a.Name)
			}
		}
		subject := expr.Range()
		if elems != nil {
			subject = elems[i].Range()
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Incomplete node",
			Detail: fmt.Sprintf("%s %s. The %s plugin of %s %q needs %s on every node; docs/plugins/%s.md says what each means.",
				label, strings.Join(parts, " and "), pl.Name, r.Kind, r.Name, joinList(required, "and"), pl.Name),
			Subject: subject.Ptr(),
		})
	}
	return diags
}

// nodeExprs finds the expression of each of n nodes as written: the
// elements of a list literal, in the playbook or, through nodes = var.x, in
// the variables file or flag that set x. nil when they are not literal
// (a for expression, a default, an environment variable).
func (pb *Playbook) nodeExprs(expr hcl.Expression, n int) []hcl.Expression {
	if tr, ok := expr.(*hclsyntax.ScopeTraversalExpr); ok && len(tr.Traversal) == 2 && tr.Traversal.RootName() == "var" {
		if attr, ok := tr.Traversal[1].(hcl.TraverseAttr); ok {
			if v := pb.Variables[attr.Name]; v != nil && v.valueExpr != nil {
				expr = v.valueExpr
			}
		}
	}
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && len(t.Exprs) == n {
		out := make([]hcl.Expression, n)
		for i, e := range t.Exprs {
			out[i] = e
		}
		return out
	}
	return nil
}

// joinList lists names as a sentence does: "a", "a and b", "a, b and c"
// (or "or").
func joinList(names []string, conj string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}
