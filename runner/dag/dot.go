// Drawing a graph in Graphviz DOT. The graph gives the vertices and edges;
// the caller says how each vertex looks and which cluster holds it, so this
// file needs to know nothing of what the vertices stand for.

package dag

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// DOTOptions say how WriteDOT draws a graph.
type DOTOptions struct {
	// Name is the digraph's name.
	Name string
	// Attrs are the graph's attributes (rankdir).
	Attrs []DOTAttr
	// NodeDefaults apply to every node (shape, font).
	NodeDefaults []DOTAttr
	// Nodes are the vertices drawn with attributes, in the order they are
	// written; a cluster's nodes are written together where its first
	// node is. A vertex not listed still appears through its edges.
	Nodes []DOTNode
	// Reduce draws the edges of the transitive reduction, so a drawing
	// shows only direct reasons. The graph itself is not changed.
	Reduce bool
}

// DOTNode is how one vertex is drawn.
type DOTNode struct {
	Name  string
	Attrs []DOTAttr
	// Cluster, when set, places the node in that cluster (a subgraph
	// whose name starts with "cluster"); clusters are told apart by name.
	Cluster *DOTCluster
}

// DOTCluster is a subgraph drawn as a box around its nodes.
type DOTCluster struct {
	Name  string
	Attrs []DOTAttr
}

// DOTAttr is one attribute. Value is written quoted unless Bare, which is
// for identifiers and numbers (shape = box, fontsize = 10).
type DOTAttr struct {
	Key, Value string
	Bare       bool
}

func (a DOTAttr) String() string {
	if a.Bare {
		return a.Key + " = " + a.Value
	}
	return a.Key + " = " + quote(a.Value)
}

// quote writes a DOT string the way Go quotes one: DOT reads \" as a quote
// and \n in a label as a line break.
func quote(s string) string { return strconv.Quote(s) }

// WriteDOT draws g: its vertices as opts says, then every edge from a
// dependency to what depends on it, in insertion order.
func (g *Graph) WriteDOT(out io.Writer, opts DOTOptions) error {
	w := bufio.NewWriter(out)
	name := opts.Name
	if !isID(name) {
		name = quote(name)
	}
	w.WriteString("digraph " + name + " {\n")
	for _, a := range opts.Attrs {
		w.WriteString("  " + a.String() + ";\n")
	}
	if len(opts.NodeDefaults) > 0 {
		w.WriteString("  node " + attrList(opts.NodeDefaults) + ";\n")
	}
	members := map[string][]DOTNode{}
	for _, n := range opts.Nodes {
		if n.Cluster != nil {
			members[n.Cluster.Name] = append(members[n.Cluster.Name], n)
		}
	}
	written := map[string]bool{}
	for _, n := range opts.Nodes {
		if n.Cluster == nil {
			writeNode(w, "  ", n)
			continue
		}
		c := n.Cluster
		if written[c.Name] {
			continue
		}
		written[c.Name] = true
		w.WriteString("  subgraph " + quote(c.Name) + " {\n")
		for _, a := range c.Attrs {
			w.WriteString("    " + a.String() + ";\n")
		}
		for _, m := range members[c.Name] {
			writeNode(w, "    ", m)
		}
		w.WriteString("  }\n")
	}
	edges := g
	if opts.Reduce {
		edges = g.Copy()
		edges.TransitiveReduction()
	}
	for _, name := range edges.names {
		for _, d := range edges.Dependencies(name) {
			w.WriteString("  " + quote(d) + " -> " + quote(name) + ";\n")
		}
	}
	w.WriteString("}\n")
	return w.Flush()
}

func writeNode(w *bufio.Writer, indent string, n DOTNode) {
	w.WriteString(indent + quote(n.Name))
	if len(n.Attrs) > 0 {
		w.WriteString(" " + attrList(n.Attrs))
	}
	w.WriteString(";\n")
}

func attrList(attrs []DOTAttr) string {
	parts := make([]string, len(attrs))
	for i, a := range attrs {
		parts[i] = a.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// isID reports whether s can be written without quotes: letters, digits
// and underscores, not starting with a digit, and not a keyword.
func isID(s string) bool {
	switch strings.ToLower(s) {
	case "", "node", "edge", "graph", "digraph", "subgraph", "strict":
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
