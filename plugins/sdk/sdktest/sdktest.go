// Package sdktest owns the test harness for plugins written with the SDK:
// a plugin served over a real in-process gRPC connection, so a vendor's unit
// tests exercise the same encoding, streaming and diagnostics path as a
// plugin binary, without building or launching one.
package sdktest

import (
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
)

// Provider serves p over a real in-process gRPC connection (go-plugin's
// TestPluginGRPCConn) and returns the host's side of it. It fails the test
// when p is not a valid plugin. The connection and server are closed by
// t.Cleanup.
func Provider(t testing.TB, p *sdk.Plugin) plugins.Provider {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	client, server := plugin.TestPluginGRPCConn(t, false, sdk.PluginMap(p))
	t.Cleanup(func() {
		// Server first: client.Close asks the server to stop itself, which
		// would race with a Stop of our own.
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(sdk.DispenseName)
	if err != nil {
		t.Fatalf("sdktest: dispense: %v", err)
	}
	return raw.(*sdk.GRPCProvider)
}
