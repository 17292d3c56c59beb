package dag

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A cluster is written whole where its first node is, strings are quoted
// and escaped, bare attributes are not, and Reduce drops the implied edge
// from the drawing only.
func TestWriteDOT(t *testing.T) {
	g := build("b -> a", "c -> b", "c -> a", `d"q -> c`)
	batch := &DOTCluster{Name: "cluster_1", Attrs: []DOTAttr{{Key: "label", Value: "batch 1"}}}
	var out strings.Builder
	require.NoError(t, g.WriteDOT(&out, DOTOptions{
		Name:         "g",
		Attrs:        []DOTAttr{{Key: "rankdir", Value: "LR"}},
		NodeDefaults: []DOTAttr{{Key: "shape", Value: "box", Bare: true}, {Key: "fontsize", Value: "10", Bare: true}},
		Nodes: []DOTNode{
			{Name: "a", Attrs: []DOTAttr{{Key: "label", Value: "a\nfirst"}}},
			{Name: "b", Cluster: batch},
			{Name: "d\"q", Attrs: []DOTAttr{{Key: "shape", Value: "diamond", Bare: true}}},
			{Name: "c", Cluster: batch},
		},
		Reduce: true,
	}))
	assert.Equal(t, `digraph g {
  rankdir = "LR";
  node [shape = box, fontsize = 10];
  "a" [label = "a\nfirst"];
  subgraph "cluster_1" {
    label = "batch 1";
    "b";
    "c";
  }
  "d\"q" [shape = diamond];
  "a" -> "b";
  "b" -> "c";
  "c" -> "d\"q";
}
`, out.String())
	assert.True(t, g.DependsOn("c", "a"), "the graph keeps its edges")
}

func TestWriteDOTQuotesAName(t *testing.T) {
	for name, want := range map[string]string{"upshift": "digraph upshift {", "my graph": `digraph "my graph" {`, "graph": `digraph "graph" {`, "1st": `digraph "1st" {`} {
		var out strings.Builder
		require.NoError(t, New().WriteDOT(&out, DOTOptions{Name: name}))
		assert.Equal(t, want+"\n}\n", out.String())
	}
}
