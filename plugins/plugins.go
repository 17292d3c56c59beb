// Package plugins owns the boundary between the runner and vendor plugins:
// the Provider interface the runner calls, and the request and response types
// that cross it. The gRPC protocol (plugins/proto), the host that launches
// plugin binaries (plugins/host) and the SDK vendors write against
// (plugins/sdk) all implement or adapt this one interface, so the runner
// never knows whether a plugin runs in process or out of it.
package plugins

import (
	"context"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// Provider is one configured plugin instance, e.g. the HAProxy behind
// `load_balancer "front"`. Every method takes a context; cancelling it
// reaches the plugin.
type Provider interface {
	// Schema describes the plugin: its kind, config and actions.
	Schema(ctx context.Context) (*schema.PluginSchema, error)
	// Configure gives the plugin its config block (and, for a node pool, its
	// nodes). It is called once, before any Invoke or Check.
	Configure(ctx context.Context, req ConfigureRequest) Diagnostics
	// Invoke runs one action and returns its result, an object of the
	// action's result type.
	Invoke(ctx context.Context, req InvokeRequest) InvokeResponse
	// Check probes, without changing anything, whether the action with these
	// arguments has already taken effect. The runner asks it on resume, for
	// a non-idempotent step found in flight.
	Check(ctx context.Context, req InvokeRequest) CheckResponse
	// Close releases the plugin (for an out-of-process one, ends its process).
	Close() error
}

// ConfigureRequest carries a plugin instance's configuration.
type ConfigureRequest struct {
	// Config conforms to the plugin's config schema.
	Config cty.Value
	// Nodes is the node_pool's node list (a list or tuple of objects, each
	// with at least a name); null for other kinds.
	Nodes cty.Value
}

// InvokeRequest names an action and its arguments.
type InvokeRequest struct {
	Action string
	// Args conforms to the action's argument schema.
	Args cty.Value
	// Progress receives progress lines while the action runs; may be nil.
	Progress func(line string)
}

// InvokeResponse is an action's outcome.
type InvokeResponse struct {
	Result      cty.Value
	Diagnostics Diagnostics
}

// CheckState is what a Check found.
type CheckState int

const (
	// CheckUnknown: the plugin cannot tell (or does not implement Check for
	// this action). A non-idempotent step found in flight then needs the
	// operator.
	CheckUnknown CheckState = iota
	// CheckApplied: the action has already taken effect; Result holds what
	// Invoke would have returned.
	CheckApplied
	// CheckNotApplied: the action has not taken effect and can be run.
	CheckNotApplied
)

func (s CheckState) String() string {
	switch s {
	case CheckApplied:
		return "applied"
	case CheckNotApplied:
		return "not applied"
	default:
		return "unknown"
	}
}

// CheckResponse is a Check's outcome.
type CheckResponse struct {
	State       CheckState
	Detail      string
	Result      cty.Value
	Diagnostics Diagnostics
}

// Severity of a diagnostic.
type Severity int

// Severities.
const (
	Error Severity = iota
	Warning
)

// Diagnostic is a problem a plugin reports. Attribute, when set, names the
// argument (or config attribute) at fault, so the host can point at its line
// in the playbook.
type Diagnostic struct {
	Severity  Severity
	Summary   string
	Detail    string
	Attribute string
}

// Diagnostics is a list of diagnostics.
type Diagnostics []Diagnostic

// Errorf builds a one-error Diagnostics.
func Errorf(format string, args ...any) Diagnostics {
	return Diagnostics{{Severity: Error, Summary: fmt.Sprintf(format, args...)}}
}

// AttributeErrorf builds a one-error Diagnostics that blames an argument.
func AttributeErrorf(attr, format string, args ...any) Diagnostics {
	return Diagnostics{{Severity: Error, Summary: fmt.Sprintf(format, args...), Attribute: attr}}
}

// FromError wraps err as Diagnostics (nil for a nil error).
func FromError(err error) Diagnostics {
	if err == nil {
		return nil
	}
	return Diagnostics{{Severity: Error, Summary: err.Error()}}
}

// HasErrors reports whether any diagnostic is an error.
func (d Diagnostics) HasErrors() bool {
	for _, x := range d {
		if x.Severity == Error {
			return true
		}
	}
	return false
}

// Err returns the errors as one error, or nil.
func (d Diagnostics) Err() error {
	if !d.HasErrors() {
		return nil
	}
	return diagError(d)
}

type diagError Diagnostics

func (e diagError) Error() string {
	var parts []string
	for _, d := range e {
		if d.Severity != Error {
			continue
		}
		s := d.Summary
		if d.Attribute != "" {
			s = d.Attribute + ": " + s
		}
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
