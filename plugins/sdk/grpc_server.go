package sdk

import (
	"context"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	pb "github.com/upshift-dev/upshift/plugins/proto/v1"
	"github.com/upshift-dev/upshift/schema"
)

// grpcServer serves a provider over the protocol. It decodes wire values
// with the schema's types and leaves all checking to provider, so in-process
// and remote calls behave the same.
type grpcServer struct {
	pb.UnimplementedProviderServer
	pr *provider
}

func (s *grpcServer) GetSchema(ctx context.Context, _ *pb.GetSchemaRequest) (*pb.GetSchemaResponse, error) {
	sp, err := s.pr.Schema(ctx)
	if err != nil {
		return &pb.GetSchemaResponse{Diagnostics: diagsToProto(plugins.FromError(err))}, nil
	}
	resp, err := schemaToProto(s.pr.p.Name, s.pr.p.Version, sp)
	if err != nil {
		return &pb.GetSchemaResponse{Diagnostics: diagsToProto(plugins.FromError(err))}, nil
	}
	return resp, nil
}

func (s *grpcServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if s.pr.err != nil {
		return &pb.ConfigureResponse{Diagnostics: diagsToProto(plugins.FromError(s.pr.err))}, nil
	}
	cfg, err := schema.DecodeValue(req.GetConfig(), s.pr.schema.Config.ImpliedType())
	if err != nil {
		return &pb.ConfigureResponse{Diagnostics: diagsToProto(plugins.Errorf("config: %s", err))}, nil
	}
	nodes, err := schema.DecodeValue(req.GetNodes(), cty.DynamicPseudoType)
	if err != nil {
		return &pb.ConfigureResponse{Diagnostics: diagsToProto(plugins.AttributeErrorf("nodes", "%s", err))}, nil
	}
	diags := s.pr.Configure(ctx, plugins.ConfigureRequest{Config: cfg, Nodes: nodes})
	return &pb.ConfigureResponse{Diagnostics: diagsToProto(diags)}, nil
}

// decodeArgs reads a call's arguments with the action's argument type; an
// unknown action is left for provider to report.
func (s *grpcServer) decodeArgs(action string, b []byte) (cty.Value, plugins.Diagnostics) {
	a := s.pr.schema.Action(action)
	if a == nil {
		return cty.NilVal, nil
	}
	v, err := schema.DecodeValue(b, a.Args.ImpliedType())
	if err != nil {
		return cty.NilVal, plugins.Errorf("%s: arguments: %s", action, err)
	}
	return v, nil
}

func (s *grpcServer) Invoke(req *pb.InvokeRequest, stream pb.Provider_InvokeServer) error {
	finish := func(resp plugins.InvokeResponse) error {
		out := &pb.InvokeResult{Diagnostics: diagsToProto(resp.Diagnostics)}
		if !resp.Diagnostics.HasErrors() && s.pr.err == nil {
			if a := s.pr.schema.Action(req.GetAction()); a != nil {
				b, err := schema.EncodeValue(resp.Result, a.Result.ImpliedType())
				if err != nil {
					out.Diagnostics = append(out.Diagnostics, diagsToProto(plugins.Errorf("%s: encoding the result: %s", req.GetAction(), err))...)
				}
				out.Result = b
			}
		}
		return stream.Send(&pb.InvokeEvent{Event: &pb.InvokeEvent_Result{Result: out}})
	}
	if s.pr.err != nil {
		return finish(plugins.InvokeResponse{Diagnostics: plugins.FromError(s.pr.err)})
	}
	args, diags := s.decodeArgs(req.GetAction(), req.GetArgs())
	if diags != nil {
		return finish(plugins.InvokeResponse{Diagnostics: diags})
	}
	// gRPC streams are not safe for concurrent Send: progress lines and the
	// result go through one lock.
	var mu sync.Mutex
	progress := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(&pb.InvokeEvent{Event: &pb.InvokeEvent_Progress{Progress: &pb.Progress{Line: line}}})
	}
	resp := s.pr.Invoke(stream.Context(), plugins.InvokeRequest{Action: req.GetAction(), Args: args, Progress: progress})
	mu.Lock()
	defer mu.Unlock()
	return finish(resp)
}

func (s *grpcServer) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	if s.pr.err != nil {
		return &pb.CheckResponse{Diagnostics: diagsToProto(plugins.FromError(s.pr.err))}, nil
	}
	args, diags := s.decodeArgs(req.GetAction(), req.GetArgs())
	if diags != nil {
		return &pb.CheckResponse{Diagnostics: diagsToProto(diags)}, nil
	}
	cr := s.pr.Check(ctx, plugins.InvokeRequest{Action: req.GetAction(), Args: args})
	out := &pb.CheckResponse{State: stateToProto(cr.State), Detail: cr.Detail, Diagnostics: diagsToProto(cr.Diagnostics)}
	if cr.State == plugins.CheckApplied {
		a := s.pr.schema.Action(req.GetAction())
		b, err := schema.EncodeValue(cr.Result, a.Result.ImpliedType())
		if err != nil {
			out.State = pb.CheckResponse_UNKNOWN
			out.Diagnostics = append(out.Diagnostics, diagsToProto(plugins.Errorf("%s check: encoding the result: %s", req.GetAction(), err))...)
		}
		out.Result = b
	}
	return out, nil
}
