package sdk

import (
	"fmt"

	"github.com/upshift-dev/upshift/plugins"
	pb "github.com/upshift-dev/upshift/plugins/proto/v1"
	"github.com/upshift-dev/upshift/schema"
)

// Conversions between package plugins/schema values and protocol messages.

func objectToProto(o *schema.Object) (*pb.Object, error) {
	out := &pb.Object{}
	if o == nil {
		return out, nil
	}
	for _, a := range o.Attributes {
		ty, err := schema.EncodeType(a.Type)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a.Name, err)
		}
		out.Attributes = append(out.Attributes, &pb.Attribute{
			Name: a.Name, Type: ty, Required: a.Required, Sensitive: a.Sensitive, Description: a.Description,
		})
	}
	for _, b := range o.Blocks {
		nested, err := objectToProto(b.Object)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.Name, err)
		}
		out.Blocks = append(out.Blocks, &pb.Block{
			Name: b.Name, Nesting: string(b.Nesting), Object: nested, Required: b.Required,
			MinItems: int64(b.MinItems), MaxItems: int64(b.MaxItems), Description: b.Description,
		})
	}
	return out, nil
}

func objectFromProto(o *pb.Object) (*schema.Object, error) {
	out := &schema.Object{}
	for _, a := range o.GetAttributes() {
		ty, err := schema.DecodeType(a.GetType())
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a.GetName(), err)
		}
		out.Attributes = append(out.Attributes, &schema.Attribute{
			Name: a.GetName(), Type: ty, Required: a.GetRequired(), Sensitive: a.GetSensitive(), Description: a.GetDescription(),
		})
	}
	for _, b := range o.GetBlocks() {
		nested, err := objectFromProto(b.GetObject())
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.GetName(), err)
		}
		out.Blocks = append(out.Blocks, &schema.Block{
			Name: b.GetName(), Nesting: schema.Nesting(b.GetNesting()), Object: nested, Required: b.GetRequired(),
			MinItems: int(b.GetMinItems()), MaxItems: int(b.GetMaxItems()), Description: b.GetDescription(),
		})
	}
	return out, nil
}

func schemaToProto(name, version string, p *schema.PluginSchema) (*pb.GetSchemaResponse, error) {
	cfg, err := objectToProto(p.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	resp := &pb.GetSchemaResponse{Name: name, Version: version, Kind: string(p.Kind), Config: cfg}
	if p.Node != nil {
		if resp.Node, err = objectToProto(p.Node); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	for _, n := range p.ActionNames() {
		a := p.Actions[n]
		args, err := objectToProto(a.Args)
		if err != nil {
			return nil, fmt.Errorf("action %s arguments: %w", n, err)
		}
		res, err := objectToProto(a.Result)
		if err != nil {
			return nil, fmt.Errorf("action %s result: %w", n, err)
		}
		resp.Actions = append(resp.Actions, &pb.Action{
			Name: a.Name, Description: a.Description, Args: args, Result: res, Idempotent: a.Idempotent, Undo: a.Undo,
		})
	}
	return resp, nil
}

func schemaFromProto(resp *pb.GetSchemaResponse) (*schema.PluginSchema, error) {
	cfg, err := objectFromProto(resp.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	p := &schema.PluginSchema{Kind: schema.Kind(resp.GetKind()), Config: cfg, Actions: map[string]*schema.Action{}}
	if resp.GetNode() != nil {
		if p.Node, err = objectFromProto(resp.GetNode()); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	for _, a := range resp.GetActions() {
		args, err := objectFromProto(a.GetArgs())
		if err != nil {
			return nil, fmt.Errorf("action %s arguments: %w", a.GetName(), err)
		}
		res, err := objectFromProto(a.GetResult())
		if err != nil {
			return nil, fmt.Errorf("action %s result: %w", a.GetName(), err)
		}
		p.Actions[a.GetName()] = &schema.Action{
			Name: a.GetName(), Description: a.GetDescription(), Args: args, Result: res,
			Idempotent: a.GetIdempotent(), Undo: a.GetUndo(),
		}
	}
	return p, nil
}

func diagsToProto(d plugins.Diagnostics) []*pb.Diagnostic {
	if len(d) == 0 {
		return nil
	}
	out := make([]*pb.Diagnostic, len(d))
	for i, x := range d {
		sev := pb.Diagnostic_ERROR
		if x.Severity == plugins.Warning {
			sev = pb.Diagnostic_WARNING
		}
		out[i] = &pb.Diagnostic{Severity: sev, Summary: x.Summary, Detail: x.Detail, Attribute: x.Attribute}
	}
	return out
}

func diagsFromProto(d []*pb.Diagnostic) plugins.Diagnostics {
	if len(d) == 0 {
		return nil
	}
	out := make(plugins.Diagnostics, len(d))
	for i, x := range d {
		sev := plugins.Error
		if x.GetSeverity() == pb.Diagnostic_WARNING {
			sev = plugins.Warning
		}
		out[i] = plugins.Diagnostic{Severity: sev, Summary: x.GetSummary(), Detail: x.GetDetail(), Attribute: x.GetAttribute()}
	}
	return out
}

func stateToProto(s plugins.CheckState) pb.CheckResponse_State {
	switch s {
	case plugins.CheckApplied:
		return pb.CheckResponse_APPLIED
	case plugins.CheckNotApplied:
		return pb.CheckResponse_NOT_APPLIED
	default:
		return pb.CheckResponse_UNKNOWN
	}
}

func stateFromProto(s pb.CheckResponse_State) plugins.CheckState {
	switch s {
	case pb.CheckResponse_APPLIED:
		return plugins.CheckApplied
	case pb.CheckResponse_NOT_APPLIED:
		return plugins.CheckNotApplied
	default:
		return plugins.CheckUnknown
	}
}
