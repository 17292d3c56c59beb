package playbooks_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

// withNodeSchema is the kinds' contracts, with the node_pool's plugin
// describing its nodes as a process-like plugin does (nodekit.NodeSchema,
// which playbooks may not import).
func withNodeSchema(_ *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
	sch := schema.ContractPlugin(kind)
	if kind == schema.KindNodePool {
		sch.Config = &schema.Object{}
		sch.Node = &schema.Object{Attributes: []*schema.Attribute{
			{Name: "name", Type: cty.String, Required: true},
			{Name: "address", Type: cty.String, Required: true},
			{Name: "config_file", Type: cty.String, Required: true},
			{Name: "command", Type: cty.List(cty.String), Required: true},
			{Name: "health_url", Type: cty.String},
		}}
	}
	return sch, nil
}

func decodeShipped(t *testing.T, varFile string) hcl.Diagnostics {
	t.Helper()
	parsed, diags := playbooks.NewParser().Parse("rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{varFile}, Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	_, diags = parsed.Decode(withNodeSchema)
	return diags
}

// TestIncompleteNodesPointAtTheVariablesFile: what run would refuse about
// a node object (the plugin's Configure: "node has no address, ...") is a
// diagnostic of validate, on the node's own line of the variables file.
func TestIncompleteNodesPointAtTheVariablesFile(t *testing.T) {
	diags := decodeShipped(t, "testdata/three-nodes.vars.hcl")
	require.Len(t, diags, 3, diags.Error())
	for i, d := range diags {
		assert.Equal(t, "Incomplete node", d.Summary)
		require.NotNil(t, d.Subject)
		assert.Equal(t, "testdata/three-nodes.vars.hcl", d.Subject.Filename)
		assert.Equal(t, 17+i, d.Subject.Start.Line, "node %d's own line", i+1)
		assert.Contains(t, d.Detail, `has no address, config_file or command.`)
		assert.Contains(t, d.Detail, `needs name, address, config_file and command on every node`)
	}
	assert.Contains(t, diags[1].Detail, `Node "node-2"`)
}

// TestCompleteNodes: a node with what the plugin reads passes, whatever
// else it carries for the playbook (processing, migrate_command); a wrong
// type or an empty required string is named.
func TestCompleteNodes(t *testing.T) {
	base := `target_version = "2"
database_b     = "/tmp/b.sqlite"
backup_dir     = "/tmp/backups"
load_balancer  = { plugin = "haproxy", config = {} }
database       = { plugin = "sqlite", config = {} }
`
	write := func(nodes string) string {
		p := filepath.Join(t.TempDir(), "cluster.vars.hcl")
		require.NoError(t, os.WriteFile(p, []byte(base+nodes), 0o644))
		return p
	}
	ok := write(`nodes = [
  { name = "a", processing = true, address = "127.0.0.1:1", config_file = "/a.json", command = ["p"], migrate_command = ["m"] },
  { name = "b", processing = false, address = "127.0.0.1:2", config_file = "/b.json", command = ["p"], migrate_command = ["m"], health_url = "http://x/h" },
]
`)
	assert.Empty(t, decodeShipped(t, ok))

	bad := write(`nodes = [
  { name = "a", processing = true, address = "", config_file = "/a.json", command = ["p"], migrate_command = ["m"] },
  { name = "b", processing = false, address = "127.0.0.1:2", config_file = "/b.json", command = ["p"], migrate_command = ["m"], health_url = ["x"] },
]
`)
	diags := decodeShipped(t, bad)
	require.Len(t, diags, 2, diags.Error())
	assert.Contains(t, diags[0].Detail, `Node "a" has address must not be empty.`)
	assert.Equal(t, 7, diags[0].Subject.Start.Line)
	assert.Contains(t, diags[1].Detail, `Node "b" has health_url must be string.`)
}

// TestIncompleteNodesFromAnExpression: nodes the playbook computes have no
// line of their own; the diagnostic points at the nodes argument.
func TestIncompleteNodesFromAnExpression(t *testing.T) {
	src := map[string]string{"main.hcl": `
node_pool "cluster" {
  plugin = "process"
  nodes  = [for i in range(2) : { name = "n${i}", address = "127.0.0.1:${8000 + i}" }]
}
step "stop" {
  for_each = toset(["n0"])
  run      = node_pool.cluster.stop
  with {
    node = each.key
  }
}
`}
	parsed, diags := playbooks.NewParser().ParseFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	_, diags = parsed.Decode(withNodeSchema)
	require.Len(t, diags, 2, diags.Error())
	assert.Equal(t, 4, diags[0].Subject.Start.Line)
	assert.Contains(t, diags[0].Detail, `Node "n0" has no config_file or command.`)
}
