package playbooks

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/schema"
)

// probeBlock says which of the two probe blocks is decoded: both read
// like a step (run, with, for_each, when, description, timeout) but may
// only call probe actions, which change nothing, and cannot depend on or
// read steps.
type probeBlock struct {
	kind  string // block type: "preflight" or "verify"
	title string // as a sentence begins: "Preflight", "Verify"
	when  string // when it runs, for messages
}

var (
	// A preflight runs before a new run changes anything.
	probePreflight = probeBlock{kind: "preflight", title: "Preflight", when: "before any step"}
	// A verify block checks the end state: after a run that finished, and
	// alone in upshift verify, on any cluster.
	probeVerify = probeBlock{kind: "verify", title: "Verify", when: "after the run, or alone in upshift verify"}
)

// decodeProbeBlock decodes a `preflight` or `verify` block.
func (pb *Playbook) decodeProbeBlock(b *hcl.Block, kind probeBlock) (*Step, hcl.Diagnostics) {
	s, diags := pb.decodeStep(b, nil, 0)
	if s == nil {
		return nil, diags
	}
	s.Preflight = kind == probePreflight
	s.Verify = kind == probeVerify
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
		refuse(kind.title+" runs an action that changes things",
			fmt.Sprintf("%s changes the cluster; a %s block only looks. The %s %q can be asked %s.", s.Run.String(), kind.kind, s.Run.Resource.Kind, s.Run.Resource.Name, joinQuoted(probes)),
			s.Run.Range)
	}
	if len(s.DependsOn) > 0 || len(s.References) > 0 {
		rng := s.DeclRange
		if len(s.DependsOn) > 0 {
			rng = s.DependsOn[0].Range
		} else {
			rng = s.References[0].Range
		}
		refuse(kind.title+" reads a step", fmt.Sprintf("A %s block runs %s: it cannot depend on a step or read its result.", kind.kind, kind.when), rng)
	}
	if s.Always || s.PointOfNoReturn || s.Retry.Attempts > 1 {
		refuse("Invalid "+kind.kind+" attribute", fmt.Sprintf("A %s block takes run, with, for_each, when, description and timeout; always, retry and point_of_no_return belong to steps.", kind.kind), s.DeclRange)
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
