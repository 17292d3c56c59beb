package schema

import (
	"fmt"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// ContractsMarkdown renders the standard actions of every kind, as
// docs/language.md shows them between its contracts markers: per kind, a
// table of actions, then each action's arguments and result. A test keeps
// the page equal to it.
func ContractsMarkdown() string {
	var b strings.Builder
	for i, kind := range Kinds {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "### %s\n\n| action | idempotent | undo | what it does |\n| --- | --- | --- | --- |\n", kind)
		actions := append([]*Action(nil), contracts[kind]...)
		sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
		for _, a := range actions {
			undo := "-"
			if a.Undo != "" {
				undo = "`" + a.Undo + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", a.Name, yesNo(a.Idempotent), undo, cell(a.Description))
		}
		for _, a := range actions {
			fmt.Fprintf(&b, "\n#### %s `%s`\n\n", kind, a.Name)
			if a.Args == nil || len(a.Args.Attributes) == 0 {
				b.WriteString("Arguments: none.\n")
			} else {
				b.WriteString("| argument | type | required | description |\n| --- | --- | --- | --- |\n")
				for _, at := range a.Args.Attributes {
					fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", at.Name, TypeString(at.Type), yesNo(at.Required), describe(at))
				}
			}
			if a.Result != nil && len(a.Result.Attributes) > 0 {
				b.WriteString("\n| result | type | description |\n| --- | --- | --- |\n")
				for _, at := range a.Result.Attributes {
					fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", at.Name, TypeString(at.Type), describe(at))
				}
			}
		}
	}
	return b.String()
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func describe(a *Attribute) string {
	if a.Sensitive {
		return cell(a.Description) + " **Sensitive**: shown as `(sensitive)`."
	}
	return cell(a.Description)
}

// TypeString writes a type as a playbook author would write it:
// list(object({name=string,state=string})), attributes sorted.
func TypeString(ty cty.Type) string {
	switch {
	case ty.IsListType():
		return "list(" + TypeString(ty.ElementType()) + ")"
	case ty.IsSetType():
		return "set(" + TypeString(ty.ElementType()) + ")"
	case ty.IsMapType():
		return "map(" + TypeString(ty.ElementType()) + ")"
	case ty.IsObjectType():
		names := make([]string, 0, len(ty.AttributeTypes()))
		for n := range ty.AttributeTypes() {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = n + "=" + TypeString(ty.AttributeType(n))
		}
		return "object({" + strings.Join(parts, ",") + "})"
	case ty == cty.DynamicPseudoType:
		return "any"
	default:
		return ty.FriendlyName()
	}
}
