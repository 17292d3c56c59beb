// Package playbooks owns the upshift playbook language: it reads a folder of
// .hcl files, decodes variables, locals, plugins, resources (load balancers,
// databases, node pools), steps and rollouts, evaluates what can be known
// before a run (variables, locals, resource configuration, node lists), and
// builds the evaluation contexts the runner uses to decode a step's `with`
// body against its action's schema. The shipped playbooks live beside it as
// .hcl folders (playbooks/rolling-upgrade).
//
// The package knows nothing of graphs or of running anything: the runner
// expands steps into instances, orders them and executes them.
package playbooks

import (
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// Playbook is a loaded and statically checked playbook folder.
type Playbook struct {
	Dir   string
	Files map[string]*hcl.File

	Variables map[string]*Variable
	Locals    map[string]*Local
	Plugins   map[string]*PluginBlock
	Resources map[string]*Resource // by address, "node_pool.cluster"
	// Steps holds every step, top-level and inside rollouts, in source order.
	Steps    []*Step
	Rollouts []*Rollout
	// Preflights are the preflight blocks: probes that run, all at once,
	// before a new run changes anything (and alone in upshift check).
	// They are not steps of the graph.
	Preflights []*Step
	// Verifies are the verify blocks: probes of the end state, run after a
	// run finishes (and alone in upshift verify). Not steps of the graph.
	Verifies []*Step
	// ClusterName is the top-level `cluster` attribute: a name for the
	// cluster shown beside its identity, "" when unset. It names the
	// cluster; what identifies it is what its resources point at.
	ClusterName string
	// State is the `state` block: where state lives (types.state.go).
	State *StateBlock

	// runID is run.id once a run has begun (SetRunID).
	runID       string
	varValues   map[string]cty.Value
	localValues map[string]cty.Value
	// base is the shared evaluation context, built once resources are
	// decoded.
	base *hcl.EvalContext
}

// Variable is a `variable` block and the value it ended up with.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	Default     cty.Value
	Sensitive   bool
	Validations []*Validation
	DeclRange   hcl.Range
	Value       cty.Value

	typeDefaults *typeexpr.Defaults
	// valueExpr is where Value was written when a variables file or flag
	// gave it, so a problem found in it later can point there.
	valueExpr hcl.Expression
}

// Validation is a `validation` block inside a variable.
type Validation struct {
	Condition    hcl.Expression
	ErrorMessage hcl.Expression
	DeclRange    hcl.Range
}

// Local is one attribute of a `locals` block.
type Local struct {
	Name      string
	Expr      hcl.Expression
	DeclRange hcl.Range
	Value     cty.Value
}

// PluginBlock is a `plugin` block: where the binary for a vendor comes from.
type PluginBlock struct {
	Name string
	// Source is the binary's file name (looked up like the default), or a
	// path to it or to its folder; default upshift-plugin-<name>.
	Source string
	// Version is the constraint as written ("~> 1.2"), checked to parse
	// when loading; `upshift init` and every run check the plugin's own
	// version against it.
	Version   string
	DeclRange hcl.Range
	// Implicit is true when no block declared the plugin and a resource
	// named it; Source then takes its default.
	Implicit bool
}

// Resource is a load_balancer, database or node_pool block: one configured
// plugin instance.
type Resource struct {
	Kind       schema.Kind
	Name       string
	PluginName string
	Schema     *schema.PluginSchema
	// Config is the decoded config block, conforming to Schema.Config when
	// the plugin's schema is known, otherwise an object of whatever the
	// block set.
	Config      cty.Value
	ConfigRange hcl.Range
	// Nodes is the node list of a node_pool: a list of objects each with at
	// least a string `name`. Null for other kinds.
	Nodes     cty.Value
	DeclRange hcl.Range
}

// Address is the resource's address in expressions, e.g. "node_pool.cluster".
func (r *Resource) Address() string { return string(r.Kind) + "." + r.Name }

// ActionRef is what a step's `run` names: an action of a resource.
type ActionRef struct {
	Resource *Resource
	Action   *schema.Action
	Range    hcl.Range
}

// String renders the reference as written, e.g. "load_balancer.front.drain".
func (a ActionRef) String() string { return a.Resource.Address() + "." + a.Action.Name }

// Retry says how often and how patiently a failing step is tried again.
type Retry struct {
	Attempts int           // total attempts, at least 1
	Delay    time.Duration // before the second attempt
	Backoff  float64       // multiplier for each further delay (1 = constant)
	MaxDelay time.Duration
}

// Reference is a reference from one block to a step or rollout, which makes
// an edge in the graph.
type Reference struct {
	Kind  string // "step" or "rollout"
	Name  string
	Range hcl.Range
}

// Step is a `step` block.
type Step struct {
	Name        string
	Description string
	// Rollout is the rollout the step belongs to, nil for a top-level step;
	// Index is its position in that rollout's body.
	Rollout *Rollout
	Index   int

	Run       ActionRef
	With      hcl.Body // nil when the step has no with block
	WithRange hcl.Range
	ForEach   hcl.Expression // nil when unset
	When      hcl.Expression // nil when unset
	Timeout   time.Duration  // 0: no limit beyond the action's own
	Retry     Retry
	Always    bool
	// PointOfNoReturn marks the step whose first instance to start is the
	// run's point of no return: a failure before it returns the cluster to
	// where it began; after it, the run halts with the cluster serving.
	PointOfNoReturn bool
	// Preflight is set on a preflight block (which is not a step of the
	// graph); its address is preflight.NAME.
	Preflight bool
	// Verify is set on a verify block; its address is verify.NAME.
	Verify    bool
	ponrRange hcl.Range

	DependsOn []Reference
	// References are the steps this step's expressions read from.
	References []Reference
	DeclRange  hcl.Range
}

// Address is the step's address without instance key, e.g. "step.drain"
// (or "preflight.lb" for a preflight block).
func (s *Step) Address() string {
	if s.Preflight {
		return "preflight." + s.Name
	}
	if s.Verify {
		return "verify." + s.Name
	}
	return "step." + s.Name
}

// Failure policies of a rollout.
const (
	OnFailureHalt     = "halt"
	OnFailureRollback = "rollback"
	OnFailurePause    = "pause"
)

// Rollout is a `rollout` block: its steps run in the order written for each
// item of `over`, items grouped in batches that follow one another.
type Rollout struct {
	Name        string
	Description string
	Over        hcl.Expression
	Key         hcl.Expression // nil: key from each.value.name, or the item itself when a string
	// Batches lists batch sizes; the last size repeats. Each is a count or a
	// percentage of all items.
	Batches   []BatchSize
	OnFailure string
	DependsOn []Reference
	// References are the steps that `over` reads from.
	References []Reference
	Steps      []*Step
	// Guard is the rollout's traffic guard, nil without a guard block.
	Guard *Guard
	// Gates are its gate blocks; PauseAfter and Bake its pause_after_batch
	// and bake shorthands (GatesFor lists them all, types.gate.go).
	Gates      []*Gate
	PauseAfter []int
	Bake       time.Duration
	PauseRange hcl.Range
	BakeRange  hcl.Range
	DeclRange  hcl.Range
}

// Preflight returns the preflight block called name, or nil.
func (p *Playbook) Preflight(name string) *Step { return probeNamed(p.Preflights, name) }

// VerifyBlock returns the verify block called name, or nil.
func (p *Playbook) VerifyBlock(name string) *Step { return probeNamed(p.Verifies, name) }

func probeNamed(probes []*Step, name string) *Step {
	for _, s := range probes {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// PointOfNoReturn returns the step marked point_of_no_return, or nil.
func (p *Playbook) PointOfNoReturn() *Step {
	for _, s := range p.Steps {
		if s.PointOfNoReturn {
			return s
		}
	}
	return nil
}

// Address is the rollout's address, e.g. "rollout.upgrade".
func (r *Rollout) Address() string { return "rollout." + r.Name }

// BatchSize is one batch size: Count items, or Percent of all items.
type BatchSize struct {
	Count   int
	Percent int
	Range   hcl.Range
}

// Of returns the size for a rollout of total items: at least one item.
func (b BatchSize) Of(total int) int {
	n := b.Count
	if b.Percent > 0 {
		n = total * b.Percent / 100
	}
	if n < 1 {
		n = 1
	}
	return n
}

// Step returns the step called name, or nil.
func (p *Playbook) Step(name string) *Step {
	for _, s := range p.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Rollout returns the rollout called name, or nil.
func (p *Playbook) Rollout(name string) *Rollout {
	for _, r := range p.Rollouts {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// SensitiveMark marks values that come from sensitive variables, so that
// plans and journals show "(sensitive)" in their place.
const SensitiveMark = "sensitive"

// ResourceNames returns the resource addresses sorted.
func (p *Playbook) ResourceNames() []string {
	names := make([]string, 0, len(p.Resources))
	for n := range p.Resources {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
