// Package dag owns the directed acyclic graph that a playbook becomes: named
// vertices, dependency edges kept both ways, cycle detection that names
// every cycle, topological order, transitive reduction for display, and a
// walk with bounded parallelism that skips the dependents of a failure. It
// knows nothing of HCL, plugins or steps.
package dag

import (
	"container/heap"
	"fmt"
	"sort"
	"strings"
)

// Vertex is anything with a unique name.
type Vertex interface {
	Name() string
}

// Graph is a set of vertices and "depends on" edges between them. Insertion
// order is kept and breaks every tie, so orders and walks are deterministic.
type Graph struct {
	vertices   map[string]Vertex
	index      map[string]int
	order      []string
	deps       map[string]map[string]struct{} // vertex -> what it depends on
	dependents map[string]map[string]struct{} // vertex -> what depends on it
}

// New returns an empty graph.
func New() *Graph {
	return &Graph{
		vertices:   map[string]Vertex{},
		index:      map[string]int{},
		deps:       map[string]map[string]struct{}{},
		dependents: map[string]map[string]struct{}{},
	}
}

// Add adds v; adding a second vertex of the same name replaces the first.
func (g *Graph) Add(v Vertex) {
	name := v.Name()
	if _, ok := g.vertices[name]; !ok {
		g.index[name] = len(g.order)
		g.order = append(g.order, name)
		g.deps[name] = map[string]struct{}{}
		g.dependents[name] = map[string]struct{}{}
	}
	g.vertices[name] = v
}

// Vertex returns the vertex called name, or nil.
func (g *Graph) Vertex(name string) Vertex { return g.vertices[name] }

// Len is the number of vertices.
func (g *Graph) Len() int { return len(g.order) }

// Names returns every vertex name in insertion order.
func (g *Graph) Names() []string { return append([]string(nil), g.order...) }

// Connect records that dependent depends on dependency. Both must have been
// added.
func (g *Graph) Connect(dependent, dependency string) {
	if _, ok := g.vertices[dependent]; !ok {
		panic(fmt.Sprintf("dag: connect from unknown vertex %q", dependent))
	}
	if _, ok := g.vertices[dependency]; !ok {
		panic(fmt.Sprintf("dag: connect to unknown vertex %q", dependency))
	}
	g.deps[dependent][dependency] = struct{}{}
	g.dependents[dependency][dependent] = struct{}{}
}

// Disconnect removes the edge, if any.
func (g *Graph) Disconnect(dependent, dependency string) {
	delete(g.deps[dependent], dependency)
	delete(g.dependents[dependency], dependent)
}

// DependsOn reports whether the edge dependent -> dependency exists.
func (g *Graph) DependsOn(dependent, dependency string) bool {
	_, ok := g.deps[dependent][dependency]
	return ok
}

// Dependencies returns what name depends on, in insertion order.
func (g *Graph) Dependencies(name string) []string { return g.sorted(g.deps[name]) }

// Dependents returns what depends on name, in insertion order.
func (g *Graph) Dependents(name string) []string { return g.sorted(g.dependents[name]) }

// EdgeCount is the number of edges.
func (g *Graph) EdgeCount() int {
	n := 0
	for _, d := range g.deps {
		n += len(d)
	}
	return n
}

func (g *Graph) sorted(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return g.index[out[i]] < g.index[out[j]] })
	return out
}

// CycleError lists every cycle of a graph. Each cycle starts at its
// earliest-added vertex and follows dependency edges.
type CycleError struct {
	Cycles [][]string
}

func (e *CycleError) Error() string {
	var parts []string
	for _, c := range e.Cycles {
		parts = append(parts, strings.Join(append(append([]string(nil), c...), c[0]), " -> "))
	}
	return "dependency cycle: " + strings.Join(parts, "; ")
}

// Validate returns a *CycleError when the graph has cycles.
func (g *Graph) Validate() error {
	if cycles := g.Cycles(); len(cycles) > 0 {
		return &CycleError{Cycles: cycles}
	}
	return nil
}

// Cycles finds the strongly connected components with more than one vertex,
// or a vertex that depends on itself (Tarjan's algorithm), and returns one
// cycle through each, deterministically.
func (g *Graph) Cycles() [][]string {
	idx := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var sccs [][]string
	counter := 0
	var strong func(v string)
	strong = func(v string) {
		idx[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
		for w := range g.deps[v] { // order does not matter to find components
			if _, seen := idx[w]; !seen {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], idx[w])
			}
		}
		if low[v] == idx[v] {
			var scc []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 || g.DependsOn(v, v) {
				sccs = append(sccs, scc)
			}
		}
	}
	for _, v := range g.order {
		if _, seen := idx[v]; !seen {
			strong(v)
		}
	}
	var cycles [][]string
	for _, scc := range sccs {
		cycles = append(cycles, g.cycleThrough(scc))
	}
	sort.Slice(cycles, func(i, j int) bool { return g.index[cycles[i][0]] < g.index[cycles[j][0]] })
	return cycles
}

// cycleThrough returns one cycle inside a strongly connected component,
// starting at its earliest vertex: a shortest path back to the start by
// breadth-first search over dependency edges that stay in the component.
func (g *Graph) cycleThrough(scc []string) []string {
	in := map[string]bool{}
	start := scc[0]
	for _, v := range scc {
		in[v] = true
		if g.index[v] < g.index[start] {
			start = v
		}
	}
	if g.DependsOn(start, start) {
		return []string{start}
	}
	prev := map[string]string{}
	queue := []string{start}
	visited := map[string]bool{start: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.Dependencies(v) {
			if !in[w] {
				continue
			}
			if w == start {
				path := []string{v}
				for p := v; p != start; {
					p = prev[p]
					path = append(path, p)
				}
				// path is v ... start reversed; put start first.
				for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return path
			}
			if !visited[w] {
				visited[w] = true
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return scc // unreachable for a real component
}

// TopologicalOrder returns every vertex after all it depends on; among
// vertices that are ready together, the earliest added comes first.
func (g *Graph) TopologicalOrder() ([]string, error) {
	remaining := make(map[string]int, len(g.order))
	q := &nameHeap{index: g.index}
	for _, v := range g.order {
		remaining[v] = len(g.deps[v])
		if remaining[v] == 0 {
			heap.Push(q, v)
		}
	}
	out := make([]string, 0, len(g.order))
	for q.Len() > 0 {
		v := heap.Pop(q).(string)
		out = append(out, v)
		for w := range g.dependents[v] {
			remaining[w]--
			if remaining[w] == 0 {
				heap.Push(q, w)
			}
		}
	}
	if len(out) < len(g.order) {
		// Whatever never became ready sits on or behind a cycle.
		return nil, g.Validate()
	}
	return out, nil
}

// TransitiveReduction removes every edge implied by a longer path, so a
// drawing shows only direct reasons. The graph must be acyclic.
func (g *Graph) TransitiveReduction() {
	for _, u := range g.order {
		// Everything reachable through a direct dependency of u, other than
		// by the direct edge itself, makes u's direct edge to it redundant.
		seen := map[string]bool{}
		var stack []string
		for _, v := range g.Dependencies(u) {
			stack = append(stack, g.Dependencies(v)...)
		}
		for len(stack) > 0 {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[w] {
				continue
			}
			seen[w] = true
			g.Disconnect(u, w)
			stack = append(stack, g.Dependencies(w)...)
		}
	}
}

type nameHeap struct {
	names []string
	index map[string]int
}

func (h *nameHeap) Len() int           { return len(h.names) }
func (h *nameHeap) Less(i, j int) bool { return h.index[h.names[i]] < h.index[h.names[j]] }
func (h *nameHeap) Swap(i, j int)      { h.names[i], h.names[j] = h.names[j], h.names[i] }
func (h *nameHeap) Push(x any)         { h.names = append(h.names, x.(string)) }
func (h *nameHeap) Pop() any {
	n := h.names[len(h.names)-1]
	h.names = h.names[:len(h.names)-1]
	return n
}

// Copy returns an independent copy of the graph (vertices shared).
func (g *Graph) Copy() *Graph {
	c := New()
	for _, name := range g.order {
		c.Add(g.vertices[name])
	}
	for v, deps := range g.deps {
		for d := range deps {
			c.Connect(v, d)
		}
	}
	return c
}
