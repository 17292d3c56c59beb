package playbooks

import (
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/upshift-dev/upshift/schema"
)

var resourceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "plugin", Required: true}, {Name: "nodes"}, {Name: "config"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "config"}},
}

// resourceHeader is what the first phase of loading knows of a resource:
// its kind, name and plugin, and its body's content for the second phase.
type resourceHeader struct {
	res     *Resource // Kind, Name, PluginName and DeclRange set
	block   *hcl.Block
	content *hcl.BodyContent
}

// decodeResourceHeader decodes the kind, name and plugin of a load_balancer,
// database or node_pool block: what is needed to know which plugin to
// start, before its schema is known. A plugin named without a plugin block
// gets an implicit one.
func (pb *Playbook) decodeResourceHeader(b *hcl.Block) (*resourceHeader, hcl.Diagnostics) {
	r := &Resource{Kind: schema.Kind(b.Type), Name: b.Labels[0], DeclRange: b.DefRange, Nodes: cty.NullVal(cty.DynamicPseudoType)}
	diags := checkName(b.Type, r.Name, b.LabelRanges[0])
	content, ds := b.Body.Content(resourceSchema)
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}
	pluginAttr := content.Attributes["plugin"]
	pv, ds := pluginAttr.Expr.Value(pb.EvalContext(nil))
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}
	pv, _ = pv.Unmark()
	if pv.Type() != cty.String || pv.IsNull() || !pv.IsKnown() || !hclValidIdentifier(pv.AsString()) {
		return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid plugin", Detail: "plugin is the name of a plugin, such as \"haproxy\": a string known before the run (a literal or a variable).", Subject: pluginAttr.Expr.Range().Ptr()})
	}
	r.PluginName = pv.AsString()
	if _, ok := pb.Plugins[r.PluginName]; !ok {
		pb.Plugins[r.PluginName] = &PluginBlock{Name: r.PluginName, Source: "upshift-plugin-" + r.PluginName, Implicit: true, DeclRange: pluginAttr.Range}
	}
	return &resourceHeader{res: r, block: b, content: content}, diags
}

// decodeResourceBody decodes the rest of a resource: its config block is
// decoded with the plugin's config schema where that schema is known, so a
// misspelt config argument fails before anything runs, and its nodes are
// checked.
func (pb *Playbook) decodeResourceBody(h *resourceHeader, schemas SchemaSource) (*Resource, hcl.Diagnostics) {
	r := new(Resource)
	*r = *h.res
	b, content, kind := h.block, h.content, r.Kind
	var diags hcl.Diagnostics
	ctx := pb.EvalContext(nil)
	pl := pb.Plugins[r.PluginName]
	sch, err := schemas(pl, kind)
	if err != nil {
		d := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot load plugin schema",
			Detail:   fmt.Sprintf("The schema of plugin %q for %s %q could not be read: %s.", r.PluginName, kind, r.Name, err),
			Subject:  content.Attributes["plugin"].Expr.Range().Ptr(),
		}
		// An error that knows what it is (an unknown plugin) titles the
		// diagnostic itself.
		var titled interface{ Summary() string }
		if errors.As(err, &titled) {
			d.Summary = titled.Summary()
			d.Detail = fmt.Sprintf("%s %q: %s.", kind, r.Name, err)
		}
		return nil, append(diags, d)
	}
	if sch.Kind != kind {
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin of the wrong kind",
			Detail:   fmt.Sprintf("Plugin %q is a %s plugin; it cannot serve a %s block.", r.PluginName, sch.Kind, kind),
			Subject:  content.Attributes["plugin"].Expr.Range().Ptr(),
		})
	}
	r.Schema = sch

	var configBlock *hcl.Block
	for _, cb := range content.Blocks {
		if configBlock != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate config block", Detail: fmt.Sprintf("Only one config block is allowed; the first is at %s.", At(configBlock.DefRange)), Subject: cb.DefRange.Ptr()})
			continue
		}
		configBlock = cb
	}
	r.Config = cty.EmptyObjectVal
	if ca, ok := content.Attributes["config"]; ok {
		// config = var.lb_config: an object value, so a vendor-neutral
		// playbook can take each vendor's settings from a variable.
		if configBlock != nil {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate config", Detail: fmt.Sprintf("config is set both as an argument and as a block (at %s); use one.", At(configBlock.DefRange)), Subject: ca.NameRange.Ptr()})
		}
		r.ConfigRange = ca.Range
		v, ds := ca.Expr.Value(ctx)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			return nil, diags
		}
		if uv, _ := v.Unmark(); uv.IsNull() || !(uv.Type().IsObjectType() || uv.Type().IsMapType()) {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid config", Detail: fmt.Sprintf("config must be an object; got %s.", typeString(v.Type())), Subject: ca.Expr.Range().Ptr()})
		}
		if isContractOnly(sch) {
			r.Config = v
		} else {
			// Converting to the schema's type would drop an attribute it
			// does not have: a misspelt one must be an error, as in a block.
			if uv, _ := v.Unmark(); uv.Type().IsObjectType() || uv.Type().IsMapType() {
				for _, name := range sortedKeys(uv.AsValueMap()) {
					if sch.Config.Attribute(name) == nil && sch.Config.Block(name) == nil {
						return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsupported config argument",
							Detail:  fmt.Sprintf("Plugin %q has no config argument %q%s. Its arguments are %s.", r.PluginName, name, suggest(name, sch.Config.Names()), joinQuoted(sch.Config.Names())),
							Subject: ca.Expr.Range().Ptr()})
					}
				}
			}
			conv, err := convert.Convert(v, sch.Config.ConstraintType())
			if err != nil {
				return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid config", Detail: fmt.Sprintf("The config of %s %q does not fit plugin %q: %s.", kind, r.Name, r.PluginName, err), Subject: ca.Expr.Range().Ptr()})
			}
			r.Config = conv
		}
	} else if configBlock != nil {
		r.ConfigRange = configBlock.DefRange
		if isContractOnly(sch) {
			// Only the contract is known: take the block as written; the
			// plugin checks it when it is configured. Nested blocks need
			// the plugin's schema to be read (one or a list?), so until
			// `upshift init` has pinned it, such a config is not known.
			if body, ok := configBlock.Body.(*hclsyntax.Body); ok && len(body.Blocks) > 0 {
				r.Config = cty.DynamicVal
			} else {
				attrs, ds := configBlock.Body.JustAttributes()
				diags = append(diags, ds...)
				vals := map[string]cty.Value{}
				for name, a := range attrs {
					v, ds := a.Expr.Value(ctx)
					diags = append(diags, ds...)
					vals[name] = v
				}
				r.Config = objectOrEmpty(vals)
			}
		} else {
			v, ds := hcldec.Decode(configBlock.Body, sch.Config.DecoderSpec(), ctx)
			diags = append(diags, ds...)
			r.Config = v
		}
	} else if !isContractOnly(sch) {
		v, ds := hcldec.Decode(hcl.EmptyBody(), sch.Config.DecoderSpec(), ctx)
		for _, d := range ds {
			d.Subject = b.DefRange.Ptr()
		}
		diags = append(diags, ds...)
		r.Config = v
	}

	nodesAttr, hasNodes := content.Attributes["nodes"]
	switch {
	case kind == schema.KindNodePool && !hasNodes:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing nodes", Detail: fmt.Sprintf("node_pool %q needs a nodes argument: a list of objects, each with a name.", r.Name), Subject: b.DefRange.Ptr()})
	case kind != schema.KindNodePool && hasNodes:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unexpected nodes argument", Detail: fmt.Sprintf("Only a node_pool has nodes; %s %q does not.", kind, r.Name), Subject: nodesAttr.NameRange.Ptr()})
	case hasNodes:
		v, ds := nodesAttr.Expr.Value(ctx)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			nd := checkNodes(v, nodesAttr.Expr.Range())
			if !nd.HasErrors() && sch.Node != nil {
				nd = pb.checkNodeMembers(r, pl, sch.Node, v, nodesAttr.Expr)
			}
			diags = append(diags, nd...)
			r.Nodes = v
		}
	}
	return r, diags
}

// isContractOnly reports whether sch is a bare kind contract rather than a
// real plugin's schema: then the plugin's config arguments are not known.
func isContractOnly(sch *schema.PluginSchema) bool {
	return sch.Config == nil
}

// checkNodes verifies that nodes is a list of objects with unique string
// names: upshift addresses nodes, and keys instances, by name.
func checkNodes(v cty.Value, rng hcl.Range) hcl.Diagnostics {
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid nodes", Detail: detail, Subject: rng.Ptr()}}
	}
	v, _ = v.Unmark()
	if v.IsNull() || !v.IsKnown() {
		return bad("nodes must be a known list of objects.")
	}
	ty := v.Type()
	if !(ty.IsListType() || ty.IsTupleType() || ty.IsSetType()) {
		return bad(fmt.Sprintf("nodes must be a list of objects, each with a name; got %s.", typeString(ty)))
	}
	seen := map[string]bool{}
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, n := it.Element()
		n, _ = n.Unmark()
		if !(n.Type().IsObjectType() || n.Type().IsMapType()) || n.IsNull() {
			return bad(fmt.Sprintf("Node %d is %s; each node must be an object with a name.", i, typeString(n.Type())))
		}
		var name cty.Value
		if n.Type().IsObjectType() && n.Type().HasAttribute("name") {
			name = n.GetAttr("name")
		} else if n.Type().IsMapType() && n.HasIndex(cty.StringVal("name")).True() {
			name = n.Index(cty.StringVal("name"))
		}
		if name == cty.NilVal || name.IsNull() || name.Type() != cty.String || name.AsString() == "" {
			return bad(fmt.Sprintf("Node %d has no name; each node must have a name (a non-empty string).", i))
		}
		if seen[name.AsString()] {
			return bad(fmt.Sprintf("Two nodes are named %q; node names must be unique.", name.AsString()))
		}
		seen[name.AsString()] = true
	}
	return nil
}
