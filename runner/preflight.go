// Preflight: the playbook's preflight blocks, probes that change nothing,
// run all at once before a new run's first step (and alone in `upshift
// check`). A failed preflight changes nothing and reports every problem
// it found, not the first.

package runner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins"
)

// preflightTransform expands the preflight blocks into their instances
// (one per for_each key), kept beside the graph, not in it: they run
// before the walk.
type preflightTransform struct{}

func (preflightTransform) Name() string { return "expand preflights" }

func (preflightTransform) Transform(b *graphBuild) hcl.Diagnostics {
	var diags hcl.Diagnostics
	b.Preflights, diags = expandProbes(b, b.Playbook.Preflights)
	return diags
}

// expandProbes makes the instances of probe blocks: one each, or one per
// for_each key.
func expandProbes(b *graphBuild, steps []*playbooks.Step) ([]*StepInstance, hcl.Diagnostics) {
	var out []*StepInstance
	var diags hcl.Diagnostics
	for _, s := range steps {
		if s.ForEach == nil {
			out = append(out, &StepInstance{Addr: s.Address(), Step: s, Each: cty.NilVal})
			continue
		}
		items, ds := expandForEach(b.Playbook, s)
		diags = append(diags, ds...)
		for _, it := range items {
			out = append(out, &StepInstance{Addr: s.Address() + "[" + fmt.Sprintf("%q", it.key) + "]", Step: s, Key: it.key, Keyed: true, Each: it.each()})
		}
	}
	return out, diags
}

// PreflightFailure is one probe (a preflight or verify instance) that
// found problems (or could not ask).
type PreflightFailure struct {
	Address string
	Action  string
	Error   string
}

// ProbeReport is what the preflights, or the verify blocks, found.
type ProbeReport struct {
	// Checked counts the instances asked (skipped by when: not counted).
	Checked  int
	Failures []PreflightFailure
	Duration time.Duration
	// Verify: the probes were verify blocks, checking the end state; else
	// preflights, before anything changed.
	Verify bool
	// Results are the checks' results by address, what they saw of the
	// cluster (a saved plan keeps them).
	Results map[string]cty.Value
	// Warnings are what checks that passed warned of (a plugin's progress
	// line starting "warning: ", such as session affinity off), by
	// address: worth knowing, not a reason to stop.
	Warnings map[string][]string
}

// PreflightReport is what the preflights found.
type PreflightReport = ProbeReport

// OK reports whether every probe passed.
func (r *ProbeReport) OK() bool { return len(r.Failures) == 0 }

// Error lists every failure, one per paragraph.
func (r *ProbeReport) Error() string {
	var b strings.Builder
	if r.Verify {
		fmt.Fprintf(&b, "verify found problems in %d of %d checks of the end state:", len(r.Failures), r.Checked)
	} else {
		fmt.Fprintf(&b, "preflight found problems in %d of %d checks; nothing was changed:", len(r.Failures), r.Checked)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "\n  %s (%s): %s", f.Address, f.Action, strings.ReplaceAll(f.Error, "\n", "\n    "))
	}
	return b.String()
}

// Preflight runs every preflight instance of g at once (at most
// parallelism at a time; 0 means 10) through providers, with each
// instance's timeout, and reports them all. Events get a step_started and
// a step_finished or step_failed per instance.
func Preflight(ctx context.Context, g *Graph, providers map[string]plugins.Provider, events Sink, parallelism int) *PreflightReport {
	return runProbes(ctx, g, g.Preflights, providers, events, parallelism)
}

// runProbes runs insts, probes that change nothing and read no step, all
// at once.
func runProbes(ctx context.Context, g *Graph, insts []*StepInstance, providers map[string]plugins.Provider, events Sink, parallelism int) *ProbeReport {
	if events == nil {
		events = Sinks(nil)
	}
	if parallelism <= 0 {
		parallelism = 10
	}
	start := time.Now()
	rep := &ProbeReport{}
	none := func(*StepInstance) (cty.Value, bool) { return cty.NilVal, false }
	var mu sync.Mutex
	fail := func(inst *StepInstance, err string) {
		mu.Lock()
		defer mu.Unlock()
		rep.Failures = append(rep.Failures, PreflightFailure{Address: inst.Addr, Action: inst.Step.Run.String(), Error: err})
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for _, inst := range insts {
		if inst.Step.When != nil {
			v, diags := g.EvalWhen(inst, none)
			if diags.HasErrors() {
				rep.Checked++
				fail(inst, diagsError(diags).Error())
				continue
			}
			if v.False() {
				continue
			}
		}
		rep.Checked++
		args, diags := g.DecodeArgs(inst, none)
		if diags.HasErrors() {
			fail(inst, diagsError(diags).Error())
			continue
		}
		args, _ = args.UnmarkDeep()
		p := providers[inst.Step.Run.Resource.Address()]
		if p == nil {
			fail(inst, "no plugin for "+inst.Step.Run.Resource.Address())
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(inst *StepInstance, args cty.Value) {
			defer func() { <-sem; wg.Done() }()
			cctx := ctx
			if inst.Step.Timeout > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, inst.Step.Timeout)
				defer cancel()
			}
			began := time.Now()
			events.Emit(Event{Time: began, Type: StepStarted, Address: inst.Addr, Action: inst.Step.Run.String(), Key: inst.Key})
			warn := func(line string) {
				if w, ok := strings.CutPrefix(line, "warning: "); ok {
					mu.Lock()
					defer mu.Unlock()
					if rep.Warnings == nil {
						rep.Warnings = map[string][]string{}
					}
					rep.Warnings[inst.Addr] = append(rep.Warnings[inst.Addr], w)
				}
			}
			resp := p.Invoke(cctx, plugins.InvokeRequest{Action: inst.Step.Run.Action.Name, Args: args, Progress: warn})
			if resp.Diagnostics.HasErrors() {
				msg := resp.Diagnostics.Err().Error()
				fail(inst, msg)
				events.Emit(Event{Time: time.Now(), Type: StepFailed, Address: inst.Addr, Error: msg, Duration: time.Since(began)})
				return
			}
			mu.Lock()
			if rep.Results == nil {
				rep.Results = map[string]cty.Value{}
			}
			rep.Results[inst.Addr] = resp.Result
			mu.Unlock()
			events.Emit(Event{Time: time.Now(), Type: StepFinished, Address: inst.Addr, Duration: time.Since(began)})
		}(inst, args)
	}
	wg.Wait()
	sort.Slice(rep.Failures, func(i, j int) bool { return rep.Failures[i].Address < rep.Failures[j].Address })
	rep.Duration = time.Since(start)
	return rep
}
