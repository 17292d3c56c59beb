package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
)

// TestBuiltBinary builds upshift-plugin-nginx as the Makefile does and
// drives it through plugins/host (checksum, handshake, AutoMTLS, gRPC),
// the way upshift launches it.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	l := startLab(t)
	bin, sum, err := hosttest.Build("github.com/upshift-dev/upshift/plugins/nginx", "nginx", t.TempDir())
	require.NoError(t, err)
	p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "nginx", Path: bin, SHA256: sum, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	ctx := context.Background()
	s, err := p.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"drain", "enable", "metrics", "preflight", "status", "verify"}, s.ActionNames())
	require.NoError(t, p.Configure(ctx, plugins.ConfigureRequest{Config: fullConfig(l.config())}).Err())

	server, done := l.slowRequest(t, 600)
	resp, lines := call(t, p, "drain", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, http.StatusOK, <-done)
	assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
	assert.NotEmpty(t, lines, "progress lines cross the process boundary")
	assert.Equal(t, []string{server}, l.downServers(t))

	resp, _ = call(t, p, "drain", args("node-9", ""))
	assert.Contains(t, oneLineErr(t, resp.Diagnostics), `no server named "node-9"`)
	assert.Equal(t, "server", resp.Diagnostics[0].Attribute)

	resp, _ = call(t, p, "enable", map[string]cty.Value{"server": cty.StringVal(server)})
	require.NoError(t, resp.Diagnostics.Err())
	assert.Empty(t, l.downServers(t))
}
