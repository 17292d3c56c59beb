// Package dag owns the directed acyclic graph that a playbook becomes: named
// vertices, dependency edges kept both ways, cycle detection that names
// every cycle, topological order, transitive reduction for display, and a
// walk with bounded parallelism that skips the dependents of a failure, and
// drawing in Graphviz DOT (dot.go) with attributes the caller gives. It
// knows nothing of HCL, plugins or steps.
package dag

import (
	"container/heap"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Vertex is anything with a unique name.
type Vertex interface {
	Name() string
}

// Graph is a set of vertices and "depends on" edges between them. Insertion
// order is kept and breaks every tie, so orders and walks are deterministic.
//
// Vertices are numbered in insertion order and edges are kept as lists of
// those numbers: a 1,000-node rollout is some 12,000 vertices, and a map per
// vertex and edge direction made building the graph cost more than
// planning it.
type Graph struct {
	ids        map[string]int
	vertices   []Vertex
	names      []string
	deps       []edgeSet // vertex -> what it depends on
	dependents []edgeSet // vertex -> what depends on it
	topo       []string  // cached TopologicalOrder; nil after any change
}

// edgeSet is the far ends of one vertex's edges, in the order they were
// connected. A set this large also keeps an index, so that connecting a
// join to a thousand instances does not scan the list each time.
type edgeSet struct {
	list  []int
	index map[int]struct{}
}

const edgeIndexAt = 32

func (s *edgeSet) has(id int) bool {
	if s.index != nil {
		_, ok := s.index[id]
		return ok
	}
	for _, x := range s.list {
		if x == id {
			return true
		}
	}
	return false
}

func (s *edgeSet) add(id int) bool {
	if s.has(id) {
		return false
	}
	s.list = append(s.list, id)
	if s.index != nil {
		s.index[id] = struct{}{}
	} else if len(s.list) > edgeIndexAt {
		s.index = make(map[int]struct{}, 2*len(s.list))
		for _, x := range s.list {
			s.index[x] = struct{}{}
		}
	}
	return true
}

func (s *edgeSet) remove(id int) bool {
	if !s.has(id) {
		return false
	}
	for i, x := range s.list {
		if x == id {
			s.list = append(s.list[:i], s.list[i+1:]...)
			break
		}
	}
	delete(s.index, id)
	return true
}

// New returns an empty graph.
func New() *Graph {
	return &Graph{ids: map[string]int{}}
}

// Grow makes room for n more vertices, so that building a large graph
// does not copy its tables as they fill.
func (g *Graph) Grow(n int) {
	g.vertices = slices.Grow(g.vertices, n)
	g.names = slices.Grow(g.names, n)
	g.deps = slices.Grow(g.deps, n)
	g.dependents = slices.Grow(g.dependents, n)
	if len(g.ids) == 0 {
		g.ids = make(map[string]int, n)
	}
}

// Add adds v; adding a second vertex of the same name replaces the first.
func (g *Graph) Add(v Vertex) {
	name := v.Name()
	if id, ok := g.ids[name]; ok {
		g.vertices[id] = v
		return
	}
	g.ids[name] = len(g.names)
	g.names = append(g.names, name)
	g.vertices = append(g.vertices, v)
	g.deps = append(g.deps, edgeSet{})
	g.dependents = append(g.dependents, edgeSet{})
	g.topo = nil
}

// Vertex returns the vertex called name, or nil.
func (g *Graph) Vertex(name string) Vertex {
	if id, ok := g.ids[name]; ok {
		return g.vertices[id]
	}
	return nil
}

// Len is the number of vertices.
func (g *Graph) Len() int { return len(g.names) }

// Names returns every vertex name in insertion order.
func (g *Graph) Names() []string { return append([]string(nil), g.names...) }

// Connect records that dependent depends on dependency. Both must have been
// added.
func (g *Graph) Connect(dependent, dependency string) {
	from, ok := g.ids[dependent]
	if !ok {
		panic(fmt.Sprintf("dag: connect from unknown vertex %q", dependent))
	}
	to, ok := g.ids[dependency]
	if !ok {
		panic(fmt.Sprintf("dag: connect to unknown vertex %q", dependency))
	}
	if g.deps[from].add(to) {
		g.dependents[to].add(from)
		g.topo = nil
	}
}

// Disconnect removes the edge, if any.
func (g *Graph) Disconnect(dependent, dependency string) {
	from, ok1 := g.ids[dependent]
	to, ok2 := g.ids[dependency]
	if ok1 && ok2 && g.deps[from].remove(to) {
		g.dependents[to].remove(from)
		g.topo = nil
	}
}

// DependsOn reports whether the edge dependent -> dependency exists.
func (g *Graph) DependsOn(dependent, dependency string) bool {
	from, ok1 := g.ids[dependent]
	to, ok2 := g.ids[dependency]
	return ok1 && ok2 && g.deps[from].has(to)
}

// Dependencies returns what name depends on, in insertion order.
func (g *Graph) Dependencies(name string) []string {
	if id, ok := g.ids[name]; ok {
		return g.sorted(g.deps[id].list)
	}
	return nil
}

// Dependents returns what depends on name, in insertion order.
func (g *Graph) Dependents(name string) []string {
	if id, ok := g.ids[name]; ok {
		return g.sorted(g.dependents[id].list)
	}
	return nil
}

// EdgeCount is the number of edges.
func (g *Graph) EdgeCount() int {
	n := 0
	for _, d := range g.deps {
		n += len(d.list)
	}
	return n
}

// sorted names ids in insertion order of the vertices (ids are that order).
func (g *Graph) sorted(ids []int) []string {
	ids = append([]int(nil), ids...)
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = g.names[id]
	}
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
	n := len(g.names)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = -1
	}
	low := make([]int, n)
	onStack := make([]bool, n)
	var stack []int
	var sccs [][]int
	counter := 0
	var strong func(v int)
	strong = func(v int) {
		idx[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range g.deps[v].list {
			if idx[w] < 0 {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], idx[w])
			}
		}
		if low[v] == idx[v] {
			var scc []int
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 || g.deps[v].has(v) {
				sccs = append(sccs, scc)
			}
		}
	}
	for v := range n {
		if idx[v] < 0 {
			strong(v)
		}
	}
	var cycles [][]int
	for _, scc := range sccs {
		cycles = append(cycles, g.cycleThrough(scc))
	}
	sort.Slice(cycles, func(i, j int) bool { return cycles[i][0] < cycles[j][0] })
	out := make([][]string, len(cycles))
	for i, c := range cycles {
		for _, id := range c {
			out[i] = append(out[i], g.names[id])
		}
	}
	return out
}

// cycleThrough returns one cycle inside a strongly connected component,
// starting at its earliest vertex: a shortest path back to the start by
// breadth-first search over dependency edges that stay in the component.
func (g *Graph) cycleThrough(scc []int) []int {
	in := map[int]bool{}
	start := scc[0]
	for _, v := range scc {
		in[v] = true
		start = min(start, v)
	}
	if g.deps[start].has(start) {
		return []int{start}
	}
	prev := map[int]int{}
	queue := []int{start}
	visited := map[int]bool{start: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		deps := append([]int(nil), g.deps[v].list...)
		sort.Ints(deps)
		for _, w := range deps {
			if !in[w] {
				continue
			}
			if w == start {
				path := []int{v}
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
// vertices that are ready together, the earliest added comes first. The
// order is kept until the graph changes, so asking twice costs nothing.
func (g *Graph) TopologicalOrder() ([]string, error) {
	if g.topo == nil {
		ids, ok := g.topoIDs()
		if !ok {
			// Whatever never became ready sits on or behind a cycle.
			return nil, g.Validate()
		}
		g.topo = make([]string, len(ids))
		for i, id := range ids {
			g.topo[i] = g.names[id]
		}
	}
	return append([]string(nil), g.topo...), nil
}

// topoIDs is Kahn's algorithm with a min-heap of ids, false on a cycle.
func (g *Graph) topoIDs() ([]int, bool) {
	remaining := make([]int, len(g.names))
	q := &idHeap{}
	for v := range g.names {
		remaining[v] = len(g.deps[v].list)
		if remaining[v] == 0 {
			q.ids = append(q.ids, v) // ids ascend, so this is already a heap
		}
	}
	out := make([]int, 0, len(g.names))
	for q.Len() > 0 {
		v := heap.Pop(q).(int)
		out = append(out, v)
		for _, w := range g.dependents[v].list {
			remaining[w]--
			if remaining[w] == 0 {
				heap.Push(q, w)
			}
		}
	}
	return out, len(out) == len(g.names)
}

// TransitiveReduction removes every edge implied by a longer path, so a
// drawing shows only direct reasons. The graph must be acyclic.
//
// An edge u -> d is implied when d can be reached from another of u's
// dependencies. Searching from those, a vertex earlier in topological
// order than every dependency of u cannot lead to one of them, so the
// search stops there: on a rollout's chains that keeps each search to a few
// vertices rather than everything upstream (a 1,000-node graph took
// seconds to draw before).
func (g *Graph) TransitiveReduction() {
	order, ok := g.topoIDs()
	if !ok {
		return
	}
	pos := make([]int, len(g.names))
	for i, id := range order {
		pos[id] = i
	}
	seen := make([]int, len(g.names)) // generation stamps, one search per u
	gen := 0
	var stack []int
	for u := range g.names {
		deps := g.deps[u].list
		if len(deps) < 2 {
			continue
		}
		deps = append([]int(nil), deps...)
		lo := pos[deps[0]]
		for _, d := range deps {
			lo = min(lo, pos[d])
		}
		gen++
		stack = stack[:0]
		for _, d := range deps {
			stack = append(stack, g.deps[d].list...)
		}
		for len(stack) > 0 {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[w] == gen || pos[w] < lo {
				continue
			}
			seen[w] = gen
			if g.deps[u].remove(w) {
				g.dependents[w].remove(u)
				g.topo = nil
			}
			stack = append(stack, g.deps[w].list...)
		}
	}
}

// idHeap pops the smallest id: the earliest-added ready vertex.
type idHeap struct{ ids []int }

func (h *idHeap) Len() int           { return len(h.ids) }
func (h *idHeap) Less(i, j int) bool { return h.ids[i] < h.ids[j] }
func (h *idHeap) Swap(i, j int)      { h.ids[i], h.ids[j] = h.ids[j], h.ids[i] }
func (h *idHeap) Push(x any)         { h.ids = append(h.ids, x.(int)) }
func (h *idHeap) Pop() any {
	n := h.ids[len(h.ids)-1]
	h.ids = h.ids[:len(h.ids)-1]
	return n
}

// Copy returns an independent copy of the graph (vertices shared).
func (g *Graph) Copy() *Graph {
	c := New()
	for _, v := range g.vertices {
		c.Add(v)
	}
	for from, deps := range g.deps {
		for _, to := range deps.list {
			c.deps[from].add(to)
			c.dependents[to].add(from)
		}
	}
	return c
}
