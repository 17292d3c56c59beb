package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
)

// TestBuiltBinary builds upshift-plugin-haproxy and drives it as a separate
// process over go-plugin (handshake, AutoMTLS, gRPC), the way the host
// launches it. (plugins/host did not exist when this was written; this uses
// go-plugin's client with the SDK's handshake and plugin map directly.)
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain on PATH")
	}
	l := startLab(t)
	bin := filepath.Join(t.TempDir(), "upshift-plugin-haproxy")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Env = os.Environ()
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap(nil),
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	require.NoError(t, err)
	raw, err := rpc.Dispense(sdk.DispenseName)
	require.NoError(t, err)
	p := raw.(plugins.Provider)

	ctx := context.Background()
	s, err := p.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"drain", "enable", "metrics", "preflight", "status", "verify"}, s.ActionNames())
	require.NoError(t, p.Configure(ctx, plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{
		"socket": cty.StringVal(l.inst.Socket), "backend": cty.StringVal("app"),
		"state_file": cty.StringVal(l.inst.StateFile), "timeout": cty.NullVal(cty.String),
	})}).Err())

	server, done := l.slowRequest(t, 600)
	resp, lines := call(t, p, "drain", serverArgs(server))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, 200, <-done)
	assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
	assert.NotEmpty(t, lines, "progress lines cross the process boundary")
	assert.Equal(t, "MAINT", l.stat(t, server)["status"])

	resp, _ = call(t, p, "drain", serverArgs("s9"))
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "server", resp.Diagnostics[0].Attribute)

	resp, _ = call(t, p, "enable", serverArgs(server))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, "UP", l.stat(t, server)["status"])
}
