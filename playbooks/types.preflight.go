package playbooks

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/schema"
)

// decodePreflight decodes a `preflight` block: a probe run before a new
// run changes anything. It reads like a step (run, with, for_each, when,
// description, timeout) but may only call probe actions, which change
// nothing, and cannot depend on or read steps: it runs before all of them.
func (pb *Playbook) decodePreflight(b *hcl.Block) (*Step, hcl.Diagnostics) {
	s, diags := pb.decodeStep(b, nil, 0)
	if s == nil {
		return nil, diags
	}
	s.Preflight = true
	refuse := func(summary, detail string, rng hcl.Range) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
	}
	if a := s.Run.Action; a != nil && !isProbe(s.Run.Resource, a) {
		var probes []string
		for _, name := range s.Run.Resource.Schema.ActionNames() {
			if isProbe(s.Run.Resource, s.Run.Resource.Schema.Action(name)) {
				probes = append(probes, name)
			}
		}
		sort.Strings(probes)
		refuse("Preflight runs an action that changes things",
			fmt.Sprintf("%s changes the cluster; a preflight only looks, before anything changes. The %s %q can be asked %s.", s.Run.String(), s.Run.Resource.Kind, s.Run.Resource.Name, joinQuoted(probes)),
			s.Run.Range)
	}
	if len(s.DependsOn) > 0 || len(s.References) > 0 {
		rng := s.DeclRange
		if len(s.DependsOn) > 0 {
			rng = s.DependsOn[0].Range
		} else {
			rng = s.References[0].Range
		}
		refuse("Preflight reads a step", "A preflight runs before any step: it cannot depend on a step or read its result.", rng)
	}
	if s.Always || s.PointOfNoReturn || s.Retry.Attempts > 1 {
		refuse("Invalid preflight attribute", "A preflight takes run, with, for_each, when, description and timeout; always, retry and point_of_no_return belong to steps.", s.DeclRange)
	}
	return s, diags
}

// isProbe: a changes nothing. A standard action is a probe when the
// kind's contract says so (the flag does not cross the plugin protocol,
// so a plugin's own copy of the schema may not carry it).
func isProbe(r *Resource, a *schema.Action) bool {
	if std := schema.ContractAction(r.Kind, a.Name); std != nil {
		return std.Probe
	}
	return a.Probe
}

// checkPointOfNoReturn allows at most one step marked point_of_no_return:
// a run passes its point of no return once.
func (pb *Playbook) checkPointOfNoReturn() hcl.Diagnostics {
	var marked []*Step
	for _, s := range pb.Steps {
		if s.PointOfNoReturn {
			marked = append(marked, s)
		}
	}
	if len(marked) < 2 {
		return nil
	}
	var addrs []string
	for _, s := range marked {
		addrs = append(addrs, s.Address())
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "More than one point of no return",
		Detail:   fmt.Sprintf("%s are all marked point_of_no_return; a run has one, the first step after which the old state stops being the truth. Keep it on the earliest.", strings.Join(addrs, ", ")),
		Subject:  marked[1].ponrRange.Ptr(),
	}}
}
