package sdk

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/upshift-dev/upshift/plugins/proto/v1"
)

// Handshake is the go-plugin handshake both ends use. The cookie is not a
// secret: it only stops a plugin binary run by hand from waiting for a host.
// ProtocolVersion changes when upshift.proto changes incompatibly.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "UPSHIFT_PLUGIN",
	MagicCookieValue: "b7f0c1d6-3c1e-4b8e-9a55-upshift-plugin-v1",
}

// DispenseName is the name the provider is registered under in PluginMap.
const DispenseName = "provider"

// PluginMap is the go-plugin plugin set: p is served on the plugin side and
// nil on the host side (which only dispenses).
func PluginMap(p *Plugin) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{DispenseName: &GRPCPlugin{Plugin: p}}
}

// GRPCPlugin binds the protocol to go-plugin: GRPCServer serves Plugin,
// GRPCClient returns a *GRPCProvider.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Plugin is served by GRPCServer; unused on the host side.
	Plugin *Plugin
	// Logger is the plugin's logger; nil uses hclog's default.
	Logger hclog.Logger
}

// GRPCServer implements plugin.GRPCPlugin.
func (g *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pr := newProvider(g.Plugin, g.Logger)
	if pr.err != nil {
		return pr.err
	}
	pb.RegisterProviderServer(s, &grpcServer{pr: pr})
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (g *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewGRPCProvider(c), nil
}

// Serve is the main of a plugin binary: it validates p (schema and its
// kind's contract; an invalid plugin exits 1 with the reason on stderr) and
// serves it over gRPC with the upshift handshake. The host negotiates
// AutoMTLS. Serve returns only when the host ends the plugin.
func Serve(p *Plugin) {
	if err := p.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "upshift plugin: %v\n", err)
		os.Exit(1)
	}
	// JSON on stderr: the host's go-plugin client parses it back into
	// structured entries of the run log.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       p.Name,
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         map[string]plugin.Plugin{DispenseName: &GRPCPlugin{Plugin: p, Logger: logger}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
