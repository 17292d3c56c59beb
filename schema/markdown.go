package schema

import (
	"fmt"
	"sort"
	"strings"
)

// Markdown renders a plugin's schema as reference documentation: its
// config, then each action with its arguments and result. Standard actions
// of the kind are marked, so a reader sees what is portable across vendors.
func Markdown(name, version string, p *PluginSchema) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Plugin `%s` (%s, version %s)\n\n", name, p.Kind, version)
	fmt.Fprintf(&b, "Generated from the plugin's schema by `upshift plugins docs`; do not edit.\n\n")
	b.WriteString("## Config\n\n")
	writeObject(&b, p.Config, "argument")
	if p.Node != nil {
		b.WriteString("\n## Node attributes\n\nWhat the plugin reads from each object of the node_pool's `nodes` list (`upshift validate` checks them). Other attributes are the playbook's own and pass through.\n\n")
		writeObject(&b, p.Node, "attribute")
	}
	names := p.ActionNames()
	sort.SliceStable(names, func(i, j int) bool {
		si, sj := ContractAction(p.Kind, names[i]) != nil, ContractAction(p.Kind, names[j]) != nil
		return si && !sj
	})
	for _, n := range names {
		a := p.Actions[n]
		std := "vendor action"
		if ContractAction(p.Kind, n) != nil {
			std = "standard " + string(p.Kind) + " action"
		}
		fmt.Fprintf(&b, "\n## `%s` (%s)\n\n%s\n\n", n, std, a.Description)
		var traits []string
		if a.Idempotent {
			traits = append(traits, "idempotent: safe to run again after a crash")
		} else {
			traits = append(traits, "not idempotent: after a crash during it, upshift asks the plugin's check or the operator before running it again")
		}
		if a.Undo != "" {
			traits = append(traits, fmt.Sprintf("undone by `%s` on rollback", a.Undo))
		}
		fmt.Fprintf(&b, "%s.\n\nArguments:\n\n", capitalize(strings.Join(traits, "; ")))
		writeObject(&b, a.Args, "argument")
		b.WriteString("\nResult:\n\n")
		writeObject(&b, a.Result, "attribute")
	}
	return b.String()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func writeObject(b *strings.Builder, o *Object, what string) {
	writeObjectAt(b, o, what, "")
}

// writeObjectAt writes o's table, then one table per nested block, named by
// its path (header, header.match) so nesting reads without indentation.
func writeObjectAt(b *strings.Builder, o *Object, what, path string) {
	if o == nil || len(o.Attributes)+len(o.Blocks) == 0 {
		fmt.Fprintf(b, "No %ss.\n", what)
		return
	}
	b.WriteString("| name | type | required | description |\n| --- | --- | --- | --- |\n")
	for _, a := range o.Attributes {
		req := "no"
		if a.Required {
			req = "yes"
		}
		desc := strings.ReplaceAll(a.Description, "|", "\\|")
		if a.Sensitive {
			desc += " *Sensitive: never shown.*"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", a.Name, a.Type.FriendlyName(), req, desc)
	}
	for _, bl := range o.Blocks {
		req, kind := "no", "block"
		switch {
		case bl.Nesting == NestingList:
			kind = "blocks"
			if bl.MinItems > 0 {
				req = fmt.Sprintf("at least %d", bl.MinItems)
			}
			if bl.MaxItems > 0 {
				kind = fmt.Sprintf("blocks (at most %d)", bl.MaxItems)
			}
		case bl.Required:
			req = "yes"
		}
		desc := strings.ReplaceAll(bl.Description, "|", "\\|")
		fmt.Fprintf(b, "| `%s { ... }` | %s | %s | %s See `%s` below. |\n", bl.Name, kind, req, desc, path+bl.Name)
	}
	for _, bl := range o.Blocks {
		fmt.Fprintf(b, "\nBlock `%s`:\n\n", path+bl.Name)
		writeObjectAt(b, bl.Object, what, path+bl.Name+".")
	}
}
