package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// TestVerifyAgainstHAProxy: with every server ready and up, verify passes
// with the count in service; a server drained, one down by its health
// check and one HAProxy does not know are each named, at once, and verify
// changes nothing.
func TestVerifyAgainstHAProxy(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, false)
	servers := func(names ...string) map[string]cty.Value {
		list := make([]cty.Value, len(names))
		for i, s := range names {
			list[i] = cty.StringVal(s)
		}
		return map[string]cty.Value{"servers": cty.ListVal(list)}
	}

	resp, _ := call(t, p, "verify", servers("s1", "s2", "s3"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"in_service": cty.NumberIntVal(3)})), "%#v", resp.Result)

	require.NoError(t, l.client.SetServerState(context.Background(), l.inst.Backend, "s2", runtimeapi.StateDrain))
	l.waitStatus(t, "s2", "DRAIN")
	l.backends["s3"].SetHealthy(false)
	l.waitStatus(t, "s3", "DOWN")
	before := l.states(t)
	resp, _ = call(t, p, "verify", servers("s1", "s2", "s3", "s9"))
	require.True(t, resp.Diagnostics.HasErrors())
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, "verify failed", resp.Diagnostics[0].Summary)
	assert.Equal(t, "3 problem(s):\n"+
		`  - server "s2" is drain, not in rotation: it takes no traffic (enable it once it is healthy)`+"\n"+
		`  - server "s3" is in rotation but its health check says down`+"\n"+
		`  - server "s9" is not in the backend (its servers: s1, s2, s3)`,
		resp.Diagnostics[0].Detail)
	assert.Equal(t, before, l.states(t), "verify changed nothing")
}
