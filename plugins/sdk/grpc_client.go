package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/zclconf/go-cty/cty"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upshift-dev/upshift/plugins"
	pb "github.com/upshift-dev/upshift/plugins/proto/v1"
	"github.com/upshift-dev/upshift/schema"
)

// Info is what a plugin says of itself.
type Info struct {
	Name    string
	Version string
	Schema  *schema.PluginSchema
}

// GRPCProvider is the host's side of the protocol: a plugins.Provider that
// calls a plugin over a gRPC connection. It fetches the schema once and
// encodes every value with the schema's types. It does not own the
// connection; Close does nothing (the host ends the process).
type GRPCProvider struct {
	client pb.ProviderClient

	// Explain, when set, rewrites a transport error (the connection broke,
	// the process died) into one the operator can act on. The host sets it
	// to say that the plugin process exited.
	Explain func(ctx context.Context, call string, err error) error

	mu   sync.Mutex
	info *Info
}

var _ plugins.Provider = (*GRPCProvider)(nil)

// NewGRPCProvider returns a provider calling the plugin behind conn.
func NewGRPCProvider(conn grpc.ClientConnInterface) *GRPCProvider {
	return &GRPCProvider{client: pb.NewProviderClient(conn)}
}

// transportError describes a failed call that never reached a reply.
func (c *GRPCProvider) transportError(ctx context.Context, call string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", call, ctx.Err())
	}
	if c.Explain != nil {
		if e := c.Explain(ctx, call, err); e != nil {
			return e
		}
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: plugin call failed (%s): %s", call, s.Code(), s.Message())
	}
	return fmt.Errorf("%s: plugin call failed: %w", call, err)
}

// Info returns the plugin's name, version and schema, fetched on first use.
func (c *GRPCProvider) Info(ctx context.Context) (*Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info != nil {
		return c.info, nil
	}
	resp, err := c.client.GetSchema(ctx, &pb.GetSchemaRequest{})
	if err != nil {
		return nil, c.transportError(ctx, "get schema", err)
	}
	if d := diagsFromProto(resp.GetDiagnostics()); d.HasErrors() {
		return nil, fmt.Errorf("plugin schema: %w", d.Err())
	}
	sp, err := schemaFromProto(resp)
	if err != nil {
		return nil, fmt.Errorf("plugin schema: %w", err)
	}
	if err := sp.Validate(); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", resp.GetName(), err)
	}
	c.info = &Info{Name: resp.GetName(), Version: resp.GetVersion(), Schema: sp}
	return c.info, nil
}

// Schema implements plugins.Provider.
func (c *GRPCProvider) Schema(ctx context.Context) (*schema.PluginSchema, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	return info.Schema, nil
}

// Configure implements plugins.Provider.
func (c *GRPCProvider) Configure(ctx context.Context, req plugins.ConfigureRequest) plugins.Diagnostics {
	sp, err := c.Schema(ctx)
	if err != nil {
		return plugins.FromError(err)
	}
	cfg, probs := schema.Conform(sp.Config, req.Config, true)
	if len(probs) > 0 {
		return problemDiagnostics(probs, "invalid plugin configuration")
	}
	cb, err := schema.EncodeValue(cfg, sp.Config.ImpliedType())
	if err != nil {
		return plugins.Errorf("config: %s", err)
	}
	nodes := req.Nodes
	if nodes != cty.NilVal {
		nodes, _ = nodes.UnmarkDeep()
	}
	nb, err := schema.EncodeValue(nodes, cty.DynamicPseudoType)
	if err != nil {
		return plugins.AttributeErrorf("nodes", "%s", err)
	}
	resp, err := c.client.Configure(ctx, &pb.ConfigureRequest{Config: cb, Nodes: nb})
	if err != nil {
		return plugins.FromError(c.transportError(ctx, "configure", err))
	}
	return diagsFromProto(resp.GetDiagnostics())
}

// encodeArgs checks and encodes a call's arguments on the host side, so a
// wrong argument is reported without a round trip and names its attribute.
func (c *GRPCProvider) encodeArgs(ctx context.Context, action string, args cty.Value) (*schema.Action, []byte, plugins.Diagnostics) {
	sp, err := c.Schema(ctx)
	if err != nil {
		return nil, nil, plugins.FromError(err)
	}
	a := sp.Action(action)
	if a == nil {
		return nil, nil, plugins.Errorf("plugin has no action %q", action)
	}
	v, probs := schema.Conform(a.Args, args, true)
	if len(probs) > 0 {
		return nil, nil, problemDiagnostics(probs, fmt.Sprintf("%s: invalid arguments", action))
	}
	b, err := schema.EncodeValue(v, a.Args.ImpliedType())
	if err != nil {
		return nil, nil, plugins.Errorf("%s: encoding arguments: %s", action, err)
	}
	return a, b, nil
}

// Invoke implements plugins.Provider: progress lines are passed to
// req.Progress as they arrive.
func (c *GRPCProvider) Invoke(ctx context.Context, req plugins.InvokeRequest) plugins.InvokeResponse {
	a, args, diags := c.encodeArgs(ctx, req.Action, req.Args)
	if diags != nil {
		return plugins.InvokeResponse{Diagnostics: diags}
	}
	stream, err := c.client.Invoke(ctx, &pb.InvokeRequest{Action: req.Action, Args: args})
	if err != nil {
		return plugins.InvokeResponse{Diagnostics: plugins.FromError(c.transportError(ctx, req.Action, err))}
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return plugins.InvokeResponse{Diagnostics: plugins.Errorf("%s: the plugin ended the call without a result", req.Action)}
		}
		if err != nil {
			return plugins.InvokeResponse{Diagnostics: plugins.FromError(c.transportError(ctx, req.Action, err))}
		}
		switch e := ev.GetEvent().(type) {
		case *pb.InvokeEvent_Progress:
			if req.Progress != nil {
				req.Progress(e.Progress.GetLine())
			}
		case *pb.InvokeEvent_Result:
			resp := plugins.InvokeResponse{Diagnostics: diagsFromProto(e.Result.GetDiagnostics())}
			if resp.Diagnostics.HasErrors() {
				return resp
			}
			v, err := schema.DecodeValue(e.Result.GetResult(), a.Result.ImpliedType())
			if err != nil {
				resp.Diagnostics = append(resp.Diagnostics, plugins.Errorf("%s: result: %s", req.Action, err)...)
				return resp
			}
			resp.Result = v
			return resp
		}
	}
}

// Check implements plugins.Provider.
func (c *GRPCProvider) Check(ctx context.Context, req plugins.InvokeRequest) plugins.CheckResponse {
	a, args, diags := c.encodeArgs(ctx, req.Action, req.Args)
	if diags != nil {
		return plugins.CheckResponse{Diagnostics: diags}
	}
	resp, err := c.client.Check(ctx, &pb.CheckRequest{Action: req.Action, Args: args})
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() == codes.Unimplemented {
			return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: "the plugin does not implement check"}
		}
		return plugins.CheckResponse{Diagnostics: plugins.FromError(c.transportError(ctx, req.Action+" check", err))}
	}
	out := plugins.CheckResponse{State: stateFromProto(resp.GetState()), Detail: resp.GetDetail(), Diagnostics: diagsFromProto(resp.GetDiagnostics())}
	if out.State == plugins.CheckApplied {
		v, err := schema.DecodeValue(resp.GetResult(), a.Result.ImpliedType())
		if err != nil {
			out.State = plugins.CheckUnknown
			out.Diagnostics = append(out.Diagnostics, plugins.Errorf("%s check: result: %s", req.Action, err)...)
		} else {
			out.Result = v
		}
	}
	return out
}

// Close does nothing: the connection and process belong to whoever made
// them (host.Process, sdktest).
func (c *GRPCProvider) Close() error { return nil }
