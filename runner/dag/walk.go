// The walk: every vertex once its dependencies are done, a bounded number
// at a time, the dependents of a failure skipped rather than failed.

package dag

import (
	"container/heap"
	"context"
	"errors"
)

// State is where a vertex ended up after a walk.
type State int

// States of a walked vertex.
const (
	// NotStarted: the walk stopped (Stop closed or ctx done) before the
	// vertex could start.
	NotStarted State = iota
	Done
	Failed
	// Skipped: something it depends on failed or was skipped.
	Skipped
)

func (s State) String() string {
	return [...]string{"not started", "done", "failed", "skipped"}[s]
}

// Outcome is one vertex's result.
type Outcome struct {
	State State
	Err   error
	// Cause names the failed vertex that made this one skipped.
	Cause string
	// Tainted: this vertex, or something it depends on, failed. A vertex
	// that ran anyway (RunAnyway) after an upstream failure is Done but
	// still tainted, so its own dependents are skipped.
	Tainted bool
}

// WalkOptions tune a walk.
type WalkOptions struct {
	// Parallelism caps how many vertices run at once; 0 means 10.
	Parallelism int
	// Stop, when closed, stops the walk from starting further vertices;
	// running ones finish. ctx cancellation does the same and is also passed
	// to the running callbacks.
	Stop <-chan struct{}
	// Hold, when closed, stops the walk as Stop does; the caller tells
	// them apart (a planned pause rather than the operator's stop).
	Hold <-chan struct{}
	// RunAnyway reports whether v runs even though something it depends on
	// failed (a step with always = true).
	RunAnyway func(v Vertex) bool
	// Skip, when it returns true, marks v done without calling the walk
	// function (a step already done in a resumed run).
	Skip func(v Vertex) bool
}

// WalkFunc does the work of one vertex.
type WalkFunc func(ctx context.Context, v Vertex) error

// ErrStopped is returned by Walk when it stopped before every vertex ran.
var ErrStopped = errors.New("walk stopped before every vertex ran")

// Walk calls fn for every vertex once all of its dependencies are done,
// at most Parallelism at a time, earliest-added first among the ready ones.
// The dependents of a failed vertex are skipped, not failed, so the outcome
// names one cause. The graph must be acyclic.
func (g *Graph) Walk(ctx context.Context, opts WalkOptions, fn WalkFunc) (map[string]*Outcome, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	par := opts.Parallelism
	if par <= 0 {
		par = 10
	}
	n := len(g.names)
	// Outcomes are kept by id while walking and named at the end.
	byID := make([]*Outcome, n)
	remaining := make([]int, n)
	ready := &idHeap{}
	for v := range n {
		byID[v] = &Outcome{}
		remaining[v] = len(g.deps[v].list)
		if remaining[v] == 0 {
			ready.ids = append(ready.ids, v) // ascending ids: already a heap
		}
	}
	type result struct {
		id  int
		err error
	}
	results := make(chan result)
	running := 0
	stopped := false
	completed := 0

	finish := func(v int) {
		completed++
		for _, w := range g.dependents[v].list {
			remaining[w]--
			if remaining[w] == 0 {
				heap.Push(ready, w)
			}
		}
	}
	isStopped := func() bool {
		if stopped {
			return true
		}
		select {
		case <-ctx.Done():
			stopped = true
		case <-opts.Stop:
			stopped = true
		case <-opts.Hold:
			stopped = true
		default:
		}
		return stopped
	}
	// causeOf is the failed vertex behind a tainted one.
	causeOf := func(d int) int {
		if c := byID[d].Cause; c != "" && byID[d].State != Failed {
			return g.ids[c]
		}
		return d
	}

	for completed < n {
		for ready.Len() > 0 && running < par && !isStopped() {
			v := heap.Pop(ready).(int)
			out := byID[v]
			cause := -1
			for _, d := range g.deps[v].list {
				if byID[d].Tainted {
					out.Tainted = true
					if c := causeOf(d); cause < 0 || c < cause {
						cause = c
					}
				}
			}
			vertex := g.vertices[v]
			if cause >= 0 {
				out.Cause = g.names[cause]
			}
			if out.Tainted && (opts.RunAnyway == nil || !opts.RunAnyway(vertex)) {
				out.State = Skipped
				finish(v)
				continue
			}
			if opts.Skip != nil && opts.Skip(vertex) {
				out.State = Done
				finish(v)
				continue
			}
			running++
			go func() {
				err := fn(ctx, vertex)
				results <- result{v, err}
			}()
		}
		if running == 0 {
			break // stopped, or nothing left that can start
		}
		r := <-results
		running--
		out := byID[r.id]
		if r.err != nil {
			out.State, out.Err, out.Tainted = Failed, r.err, true
		} else {
			out.State = Done
		}
		finish(r.id)
	}
	outcomes := make(map[string]*Outcome, n)
	for id, o := range byID {
		outcomes[g.names[id]] = o
	}
	if completed < n {
		return outcomes, ErrStopped
	}
	return outcomes, nil
}
