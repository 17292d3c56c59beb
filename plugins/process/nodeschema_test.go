package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// TestNodeSchemaIsWhatConfigureRefuses: the node description the plugin
// gives over the wire (what validate checks node objects against) requires
// exactly what Configure refuses a node without, so validate and run agree.
func TestNodeSchemaIsWhatConfigureRefuses(t *testing.T) {
	p := sdktest.Provider(t, newPlugin())
	s, err := p.Schema(context.Background())
	require.NoError(t, err)
	require.NotNil(t, s.Node, "a node_pool plugin describes its nodes")

	full := map[string]cty.Value{"name": cty.StringVal("n1")}
	var required []string
	for _, a := range s.Node.Attributes {
		if !a.Required || a.Name == "name" {
			continue
		}
		required = append(required, a.Name)
		if a.Type.IsListType() {
			full[a.Name] = cty.ListVal([]cty.Value{cty.StringVal("/bin/platformd")})
		} else {
			full[a.Name] = cty.StringVal("/abs/" + a.Name)
		}
	}
	assert.ElementsMatch(t, []string{"address", "config_file", "data_dir", "pid_file", "log_file", "command"}, required)
	assert.Empty(t, s.Node.CheckMembers(cty.ObjectVal(full)))
	cfg := cty.ObjectVal(map[string]cty.Value{})
	ok := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: cty.TupleVal([]cty.Value{cty.ObjectVal(full)})})
	require.False(t, ok.HasErrors(), "%v", ok.Err())

	for _, name := range required {
		without := map[string]cty.Value{}
		for k, v := range full {
			if k != name {
				without[k] = v
			}
		}
		node := cty.ObjectVal(without)
		probs := s.Node.CheckMembers(node)
		require.Len(t, probs, 1, name)
		assert.Equal(t, name, probs[0].Path)
		d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg, Nodes: cty.TupleVal([]cty.Value{node})})
		require.True(t, d.HasErrors(), "Configure accepts a node without %s", name)
		assert.Contains(t, d.Err().Error(), "has no "+name)
	}
}
