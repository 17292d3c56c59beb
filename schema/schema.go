// Package schema owns how plugin actions describe their arguments and results:
// typed attributes (cty types, required, sensitive, description), the standard
// action sets every vendor of a plugin kind must implement ("kinds are
// contracts"), conversion of those descriptions to hcldec specs so a step's
// `with` body is decoded and checked before anything runs, the check of a
// value against a schema object with a path in every problem (Conform,
// PathString), and the wire form of values (cty msgpack) and types (cty
// JSON).
package schema

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Kind names a plugin kind. Every vendor plugin is of exactly one kind.
type Kind string

// The plugin kinds a playbook can declare, each a resource block type.
const (
	KindLoadBalancer Kind = "load_balancer"
	KindDatabase     Kind = "database"
	KindNodePool     Kind = "node_pool"
)

// Kinds lists every plugin kind in a stable order.
var Kinds = []Kind{KindLoadBalancer, KindDatabase, KindNodePool}

// Valid reports whether k is a known plugin kind.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// Attribute describes one argument or result attribute.
type Attribute struct {
	Name        string
	Type        cty.Type
	Required    bool
	Sensitive   bool
	Description string
}

// Object describes a set of attributes, and of nested blocks: an action's
// arguments, its result or a plugin's configuration. Attributes and blocks
// keep their declared order so generated documentation reads the way the
// author wrote it. Results describe values, so they have no blocks (an
// attribute of object type says the same).
type Object struct {
	Attributes []*Attribute
	Blocks     []*Block
}

// Nesting says how often a nested block may appear and what value it makes.
type Nesting string

// Nesting modes.
const (
	// NestingSingle: at most once (exactly once when Required); the value is
	// an object, null when the block is absent.
	NestingSingle Nesting = "single"
	// NestingList: any number of times, between MinItems and MaxItems; the
	// value is a list of objects in the order written.
	NestingList Nesting = "list"
)

// Block describes a nested block of a body, such as
//
//	header {
//	  name  = "X-Upgrade"
//	  value = "1"
//	}
//
// with attributes (and blocks) of its own.
type Block struct {
	Name        string
	Nesting     Nesting
	Object      *Object
	Required    bool // NestingSingle only
	MinItems    int  // NestingList only
	MaxItems    int  // NestingList only; 0 is no limit
	Description string
}

// ImpliedType is an object for a single block, a list of objects for a
// list of blocks.
func (b *Block) ImpliedType() cty.Type {
	if b.Nesting == NestingList {
		return cty.List(b.Object.ImpliedType())
	}
	return b.Object.ImpliedType()
}

// Block returns the nested block called name, or nil.
func (o *Object) Block(name string) *Block {
	if o == nil {
		return nil
	}
	for _, b := range o.Blocks {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Attribute returns the attribute called name, or nil.
func (o *Object) Attribute(name string) *Attribute {
	if o == nil {
		return nil
	}
	for _, a := range o.Attributes {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Names returns the attribute names, then the block names, in declared
// order: everything a body may set.
func (o *Object) Names() []string {
	if o == nil {
		return nil
	}
	names := make([]string, 0, len(o.Attributes)+len(o.Blocks))
	for _, a := range o.Attributes {
		names = append(names, a.Name)
	}
	for _, b := range o.Blocks {
		names = append(names, b.Name)
	}
	return names
}

// ImpliedType is the cty object type of a value conforming to o. Optional
// attributes are present in the type and null when not set, so every value
// that crosses the wire has the same shape.
func (o *Object) ImpliedType() cty.Type {
	if o == nil || len(o.Attributes)+len(o.Blocks) == 0 {
		return cty.EmptyObject
	}
	attrs := make(map[string]cty.Type, len(o.Attributes)+len(o.Blocks))
	for _, a := range o.Attributes {
		attrs[a.Name] = a.Type
	}
	for _, b := range o.Blocks {
		attrs[b.Name] = b.ImpliedType()
	}
	return cty.Object(attrs)
}

// DecoderSpec converts o into the hcldec spec that decodes a body written
// against it: an unknown argument, a wrong type or a missing required one
// become diagnostics pointing into the body.
func (o *Object) DecoderSpec() hcldec.Spec {
	spec := hcldec.ObjectSpec{}
	if o == nil {
		return spec
	}
	for _, a := range o.Attributes {
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: a.Type, Required: a.Required}
	}
	for _, b := range o.Blocks {
		if b.Nesting == NestingList {
			spec[b.Name] = &hcldec.BlockListSpec{TypeName: b.Name, Nested: b.Object.DecoderSpec(), MinItems: b.MinItems, MaxItems: b.MaxItems}
		} else {
			spec[b.Name] = &hcldec.BlockSpec{TypeName: b.Name, Nested: b.Object.DecoderSpec(), Required: b.Required}
		}
	}
	return spec
}

// Validate reports a description that cannot be used: empty or duplicate
// names, or a missing type.
func (o *Object) Validate() error {
	if o == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, a := range o.Attributes {
		switch {
		case a.Name == "":
			return fmt.Errorf("an attribute has no name")
		case seen[a.Name]:
			return fmt.Errorf("attribute %q is declared twice", a.Name)
		case a.Type == cty.NilType:
			return fmt.Errorf("attribute %q has no type", a.Name)
		}
		seen[a.Name] = true
	}
	for _, b := range o.Blocks {
		switch {
		case b.Name == "":
			return fmt.Errorf("a block has no name")
		case seen[b.Name]:
			return fmt.Errorf("%q is declared twice (blocks and attributes share names)", b.Name)
		case b.Object == nil:
			return fmt.Errorf("block %q has no object", b.Name)
		case b.Nesting != NestingSingle && b.Nesting != NestingList:
			return fmt.Errorf("block %q: nesting must be %q or %q, not %q", b.Name, NestingSingle, NestingList, b.Nesting)
		case b.Nesting == NestingList && b.Required:
			return fmt.Errorf("block %q: a list of blocks says how many it needs with min_items, not required", b.Name)
		case b.Nesting == NestingSingle && (b.MinItems != 0 || b.MaxItems != 0):
			return fmt.Errorf("block %q: min_items and max_items are for a list of blocks", b.Name)
		case b.MinItems < 0 || b.MaxItems < 0 || (b.MaxItems > 0 && b.MinItems > b.MaxItems):
			return fmt.Errorf("block %q: min_items %d and max_items %d do not make a range", b.Name, b.MinItems, b.MaxItems)
		case b.Nesting == NestingList && b.Object.ImpliedType().HasDynamicTypes():
			// Blocks whose attributes may differ in type cannot make a list.
			return fmt.Errorf("block %q: a list of blocks cannot hold attributes of type any", b.Name)
		}
		seen[b.Name] = true
		if err := b.Object.Validate(); err != nil {
			return fmt.Errorf("block %q: %w", b.Name, err)
		}
	}
	return nil
}

// Action describes one verb a plugin offers.
type Action struct {
	Name        string
	Description string
	Args        *Object
	Result      *Object
	// Idempotent actions can be rerun safely, which is what lets a resumed
	// run repeat a step that was in flight when the runner died.
	Idempotent bool
	// Undo names the action that reverses this one, run with the same
	// arguments on rollback; empty when there is none. An action with an
	// undo must be idempotent (PluginSchema.Validate checks it).
	Undo string
	// Probe actions change nothing: they only look. Only they may run in a
	// playbook's preflight, before the cluster is touched.
	Probe bool
}

// PluginSchema is the full description a plugin gives of itself.
type PluginSchema struct {
	Kind    Kind
	Config  *Object
	Actions map[string]*Action
	// Node is, for a node_pool plugin, what it reads from each object of
	// the pool's nodes list (CheckMembers), so validate can say what run
	// would refuse. nil for other kinds and for plugins that declare none.
	Node *Object
}

// Action returns the named action, or nil.
func (p *PluginSchema) Action(name string) *Action {
	if p == nil {
		return nil
	}
	return p.Actions[name]
}

// ActionNames returns the action names sorted.
func (p *PluginSchema) ActionNames() []string {
	names := make([]string, 0, len(p.Actions))
	for n := range p.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks that the plugin's description is usable and that it
// implements its kind's contract exactly: every standard action present with
// argument and result schemas that the contract's callers can rely on.
func (p *PluginSchema) Validate() error {
	if !p.Kind.Valid() {
		return fmt.Errorf("unknown plugin kind %q", p.Kind)
	}
	if err := p.Config.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if p.Node != nil {
		if p.Kind != KindNodePool {
			return fmt.Errorf("only a node_pool plugin describes its nodes; this is a %s plugin", p.Kind)
		}
		if err := p.Node.Validate(); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		if len(p.Node.Blocks) > 0 {
			return errors.New("node: a node is an object value and has no blocks; use an attribute of object type")
		}
	}
	for name, a := range p.Actions {
		if a.Name != name {
			return fmt.Errorf("action %q is registered as %q", a.Name, name)
		}
		if err := a.Args.Validate(); err != nil {
			return fmt.Errorf("action %s arguments: %w", name, err)
		}
		if err := a.Result.Validate(); err != nil {
			return fmt.Errorf("action %s result: %w", name, err)
		}
		if a.Result != nil && len(a.Result.Blocks) > 0 {
			return fmt.Errorf("action %s result: a result is a value and has no blocks; use an attribute of object type", name)
		}
		if a.Undo != "" && p.Actions[a.Undo] == nil && ContractAction(p.Kind, a.Undo) == nil {
			// (A missing standard action is CheckContract's to report.)
			return fmt.Errorf("action %s names undo action %q, which does not exist", name, a.Undo)
		}
		if a.Probe && a.Undo != "" {
			return fmt.Errorf("action %s is a probe, which changes nothing, yet names an undo action", name)
		}
		if a.Undo != "" && !a.Idempotent {
			// A rollback cut off midway leaves the step's effect in doubt,
			// and a resume settles it by running the step again.
			return fmt.Errorf("action %s has an undo action but is not idempotent; a resumed rollback runs it again, so it must be", name)
		}
	}
	return CheckContract(p)
}

// ConstraintType is ImpliedType with every optional attribute marked
// optional, for converting a whole object value (config = var.x) rather
// than decoding a body: a missing optional attribute becomes null.
func (o *Object) ConstraintType() cty.Type {
	if o == nil || len(o.Attributes)+len(o.Blocks) == 0 {
		return cty.EmptyObject
	}
	attrs := make(map[string]cty.Type, len(o.Attributes)+len(o.Blocks))
	var optional []string
	for _, a := range o.Attributes {
		attrs[a.Name] = a.Type
		if !a.Required {
			optional = append(optional, a.Name)
		}
	}
	// Written as a value, a block is an object (or a list of them) whose
	// own optional attributes may be left out too.
	for _, b := range o.Blocks {
		ty := b.Object.ConstraintType()
		if b.Nesting == NestingList {
			ty = cty.List(ty)
		}
		attrs[b.Name] = ty
		if !b.Required && b.MinItems == 0 {
			optional = append(optional, b.Name)
		}
	}
	return cty.ObjectWithOptionalAttrs(attrs, optional)
}
