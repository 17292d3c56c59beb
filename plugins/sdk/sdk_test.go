package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

var (
	waitAction = &schema.Action{
		Name: "wait", Idempotent: true,
		Args:   &schema.Object{Attributes: []*schema.Attribute{{Name: "for", Type: cty.String, Required: true}}},
		Result: &schema.Object{},
	}
	boomAction = &schema.Action{Name: "boom", Args: &schema.Object{}, Result: &schema.Object{}}
	// probeAction has nested blocks: a list of header blocks and an
	// optional single tls block with a sensitive attribute.
	probeAction = &schema.Action{
		Name: "probe", Idempotent: true,
		Args: &schema.Object{
			Attributes: []*schema.Attribute{{Name: "url", Type: cty.String, Required: true}},
			Blocks: []*schema.Block{
				{Name: "header", Nesting: schema.NestingList, MaxItems: 2, Description: "A request header.", Object: &schema.Object{Attributes: []*schema.Attribute{
					{Name: "name", Type: cty.String, Required: true},
					{Name: "value", Type: cty.String},
				}}},
				{Name: "tls", Nesting: schema.NestingSingle, Object: &schema.Object{Attributes: []*schema.Attribute{
					{Name: "insecure", Type: cty.Bool},
					{Name: "client_key", Type: cty.String, Sensitive: true},
				}}},
			},
		},
		Result: &schema.Object{Attributes: []*schema.Attribute{{Name: "request", Type: cty.String, Required: true}}},
	}
	echoAction = &schema.Action{
		Name: "echo",
		Args: &schema.Object{Attributes: []*schema.Attribute{
			{Name: "text", Type: cty.String, Required: true},
			{Name: "times", Type: cty.Number},
			{Name: "loud", Type: cty.Bool},
			{Name: "token", Type: cty.String, Sensitive: true},
			{Name: "tags", Type: cty.List(cty.String)},
		}},
		Result: &schema.Object{Attributes: []*schema.Attribute{
			{Name: "text", Type: cty.String, Required: true},
			{Name: "token", Type: cty.String, Sensitive: true},
		}},
	}
)

// fakeLB is a small load_balancer plugin: the contract plus wait, boom and
// echo. It records what its handlers saw.
type fakeLB struct {
	mu         sync.Mutex
	configured cty.Value
	cancelled  chan error
	started    chan struct{}
}

func newFakeLB() *fakeLB {
	return &fakeLB{cancelled: make(chan error, 1), started: make(chan struct{}, 1)}
}

func (f *fakeLB) plugin() *sdk.Plugin {
	lb := func(name string) *schema.Action { return schema.ContractAction(schema.KindLoadBalancer, name) }
	return &sdk.Plugin{
		Name: "fake", Version: "1.2.3", Kind: schema.KindLoadBalancer,
		Config: &schema.Object{Attributes: []*schema.Attribute{
			{Name: "socket", Type: cty.String, Required: true},
			{Name: "password", Type: cty.String, Sensitive: true},
		}},
		Configure: func(_ context.Context, req plugins.ConfigureRequest) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if req.Config.GetAttr("socket").AsString() == "bad" {
				return sdk.ArgError("socket", "cannot connect")
			}
			f.configured = req.Config
			return nil
		},
		Actions: []*sdk.Action{
			{Schema: lb("drain"), Run: func(_ context.Context, r *sdk.Request) (cty.Value, error) {
				d, err := r.Duration("timeout", time.Minute)
				if err != nil {
					return cty.NilVal, err
				}
				r.Progress("draining %s within %s", r.String("server"), d)
				r.Progress("done")
				return sdk.Result(lb("drain"), map[string]cty.Value{"server": cty.StringVal(r.String("server")), "state": cty.StringVal("maint")})
			}, Check: func(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
				if r.String("server") == "s1" {
					res, err := sdk.Result(lb("drain"), map[string]cty.Value{"server": cty.StringVal("s1"), "state": cty.StringVal("maint")})
					return plugins.CheckResponse{State: plugins.CheckApplied, Detail: "in maint", Result: res}, err
				}
				return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: "ready"}, nil
			}},
			{Schema: lb("enable"), Run: func(_ context.Context, r *sdk.Request) (cty.Value, error) {
				// A result of the wrong shape: the SDK must refuse it.
				return cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal(r.String("server"))}), nil
			}},
			{Schema: lb("status"), Run: func(context.Context, *sdk.Request) (cty.Value, error) {
				return sdk.Result(lb("status"), map[string]cty.Value{"servers": cty.ListValEmpty(schema.ServerStatusType)})
			}},
			{Schema: waitAction, Run: func(ctx context.Context, r *sdk.Request) (cty.Value, error) {
				f.started <- struct{}{}
				select {
				case <-ctx.Done():
					f.cancelled <- ctx.Err()
					return cty.NilVal, ctx.Err()
				case <-time.After(10 * time.Second):
					return cty.EmptyObjectVal, nil
				}
			}},
			{Schema: boomAction, Run: func(context.Context, *sdk.Request) (cty.Value, error) {
				var m map[string]int
				m["x"] = 1 // nil map write: a panic
				return cty.EmptyObjectVal, nil
			}},
			{Schema: echoAction, Run: func(_ context.Context, r *sdk.Request) (cty.Value, error) {
				var a struct {
					Text  string   `cty:"text"`
					Times int      `cty:"times"`
					Loud  bool     `cty:"loud"`
					Tags  []string `cty:"tags"`
				}
				if err := r.Decode(&a); err != nil {
					return cty.NilVal, err
				}
				if a.Text == "" {
					return cty.NilVal, sdk.ArgError("text", "must not be empty")
				}
				if a.Text == "plain-error" {
					return cty.NilVal, errors.New("something broke")
				}
				times := r.Int("times", 1)
				text := strings.Repeat(a.Text, times)
				if r.Bool("loud", false) {
					text = strings.ToUpper(text)
				}
				text += strings.Join(a.Tags, ",")
				return sdk.Result(echoAction, map[string]cty.Value{"text": cty.StringVal(text), "token": r.Args.GetAttr("token")})
			}},
			{Schema: probeAction, Run: func(_ context.Context, r *sdk.Request) (cty.Value, error) {
				// The request as the handler sees it: headers in order, and
				// whether a tls block came.
				var parts []string
				for it := r.Args.GetAttr("header").ElementIterator(); it.Next(); {
					_, h := it.Element()
					v := "-"
					if !h.GetAttr("value").IsNull() {
						v = h.GetAttr("value").AsString()
					}
					parts = append(parts, h.GetAttr("name").AsString()+"="+v)
				}
				tls := "no-tls"
				if t := r.Args.GetAttr("tls"); !t.IsNull() {
					tls = fmt.Sprintf("tls(insecure=%v,key=%t)", t.GetAttr("insecure").True(), !t.GetAttr("client_key").IsNull())
				}
				return sdk.Result(probeAction, map[string]cty.Value{"request": cty.StringVal(r.String("url") + " " + strings.Join(parts, ",") + " " + tls)})
			}},
			{Schema: lb("metrics"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: lb("preflight"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: lb("verify"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
		},
	}
}

// providers runs a test against both the in-process provider and the same
// plugin over gRPC: they must behave the same.
func providers(t *testing.T, f func(t *testing.T, fake *fakeLB, p plugins.Provider)) {
	t.Run("in-process", func(t *testing.T) {
		fake := newFakeLB()
		f(t, fake, sdk.NewProvider(fake.plugin()))
	})
	t.Run("grpc", func(t *testing.T) {
		fake := newFakeLB()
		f(t, fake, sdktest.Provider(t, fake.plugin()))
	})
}

func configure(t *testing.T, p plugins.Provider) {
	t.Helper()
	d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"socket": cty.StringVal("/run/lb.sock")})})
	require.False(t, d.HasErrors(), "%v", d.Err())
}

func TestSchema(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		s, err := p.Schema(context.Background())
		require.NoError(t, err)
		assert.Equal(t, schema.KindLoadBalancer, s.Kind)
		assert.Equal(t, []string{"boom", "drain", "echo", "enable", "metrics", "preflight", "probe", "status", "verify", "wait"}, s.ActionNames())
		require.NoError(t, schema.CheckContract(s))
		drain := s.Action("drain")
		assert.True(t, drain.Idempotent)
		assert.Equal(t, "enable", drain.Undo)
		assert.Equal(t, schema.ContractAction(schema.KindLoadBalancer, "drain").Description, drain.Description)
		assert.True(t, s.Config.Attribute("password").Sensitive)
		assert.True(t, s.Config.Attribute("socket").Required)
		assert.True(t, s.Action("echo").Args.Attribute("tags").Type.Equals(cty.List(cty.String)))
		// Nested blocks cross the wire whole.
		probe := s.Action("probe").Args
		require.Len(t, probe.Blocks, 2)
		assert.Equal(t, *probeAction.Args.Blocks[0].Object.Attributes[0], *probe.Block("header").Object.Attributes[0])
		assert.Equal(t, schema.NestingList, probe.Block("header").Nesting)
		assert.Equal(t, 2, probe.Block("header").MaxItems)
		assert.Equal(t, "A request header.", probe.Block("header").Description)
		assert.True(t, probe.Block("tls").Object.Attribute("client_key").Sensitive)
		assert.True(t, probe.ImpliedType().Equals(probeAction.Args.ImpliedType()))
	})
}

// TestNestedBlockArguments: block values reach the handler in order,
// absent blocks are an empty list or null, and problems name their path.
func TestNestedBlockArguments(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		call := func(args map[string]cty.Value) plugins.InvokeResponse {
			return p.Invoke(context.Background(), plugins.InvokeRequest{Action: "probe", Args: cty.ObjectVal(args)})
		}
		header := func(name string, value cty.Value) cty.Value {
			return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name), "value": value})
		}
		resp := call(map[string]cty.Value{"url": cty.StringVal("http://a")})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, "http://a  no-tls", resp.Result.GetAttr("request").AsString())

		resp = call(map[string]cty.Value{
			"url":    cty.StringVal("http://a"),
			"header": cty.TupleVal([]cty.Value{header("X-B", cty.StringVal("2")), cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("X-A")})}),
			"tls":    cty.ObjectVal(map[string]cty.Value{"insecure": cty.True, "client_key": cty.StringVal("k").Mark("sensitive")}),
		})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, "http://a X-B=2,X-A=- tls(insecure=true,key=true)", resp.Result.GetAttr("request").AsString())

		resp = call(map[string]cty.Value{
			"url":    cty.StringVal("http://a"),
			"header": cty.TupleVal([]cty.Value{header("X-A", cty.StringVal("1")), cty.ObjectVal(map[string]cty.Value{"value": cty.StringVal("1")})}),
		})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Equal(t, "header[1].name", resp.Diagnostics[0].Attribute)

		three := cty.TupleVal([]cty.Value{header("a", cty.NullVal(cty.String)), header("b", cty.NullVal(cty.String)), header("c", cty.NullVal(cty.String))})
		resp = call(map[string]cty.Value{"url": cty.StringVal("http://a"), "header": three})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Equal(t, "header", resp.Diagnostics[0].Attribute)
		assert.Contains(t, resp.Diagnostics[0].Detail, `3 "header" blocks given; between 0 and 2 allowed`)

		resp = call(map[string]cty.Value{"url": cty.StringVal("http://a"), "tls": cty.StringVal("yes")})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Equal(t, "tls", resp.Diagnostics[0].Attribute)
	})
}

func TestConfigure(t *testing.T) {
	providers(t, func(t *testing.T, fake *fakeLB, p plugins.Provider) {
		ctx := context.Background()
		// An optional attribute left out arrives as null.
		configure(t, p)
		assert.True(t, fake.configured.GetAttr("password").IsNull())

		d := p.Configure(ctx, plugins.ConfigureRequest{Config: cty.EmptyObjectVal})
		require.True(t, d.HasErrors())
		assert.Equal(t, "socket", d[0].Attribute)

		d = p.Configure(ctx, plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"socket": cty.StringVal("bad")})})
		require.True(t, d.HasErrors())
		assert.Equal(t, "socket", d[0].Attribute)
		assert.Contains(t, d[0].Detail, "cannot connect")
	})
}

func TestInvokeProgressAndResult(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		var lines []string
		resp := p.Invoke(context.Background(), plugins.InvokeRequest{
			Action:   "drain",
			Args:     cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s2"), "timeout": cty.StringVal("5s")}),
			Progress: func(l string) { lines = append(lines, l) },
		})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, []string{"draining s2 within 5s", "done"}, lines)
		assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
		assert.Equal(t, "s2", resp.Result.GetAttr("server").AsString())
	})
}

func TestInvokeArguments(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		ctx := context.Background()
		call := func(args map[string]cty.Value) plugins.InvokeResponse {
			return p.Invoke(ctx, plugins.InvokeRequest{Action: "echo", Args: cty.ObjectVal(args)})
		}
		// Optional arguments unset: null in Args, zero in Decode, default in helpers.
		resp := call(map[string]cty.Value{"text": cty.StringVal("ab")})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, "ab", resp.Result.GetAttr("text").AsString())
		assert.True(t, resp.Result.GetAttr("token").IsNull())

		// A number given as a string converts; the sensitive value comes back intact.
		resp = call(map[string]cty.Value{"text": cty.StringVal("ab"), "times": cty.StringVal("2"), "loud": cty.True,
			"token": cty.StringVal("s3cret").Mark("sensitive"), "tags": cty.TupleVal([]cty.Value{cty.StringVal("x"), cty.StringVal("y")})})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, "ABABx,y", resp.Result.GetAttr("text").AsString())
		assert.Equal(t, "s3cret", resp.Result.GetAttr("token").AsString())

		for name, tc := range map[string]struct {
			args map[string]cty.Value
			attr string
			want string
		}{
			"missing required": {map[string]cty.Value{"times": cty.NumberIntVal(1)}, "text", "required"},
			"wrong type":       {map[string]cty.Value{"text": cty.StringVal("a"), "times": cty.StringVal("many")}, "times", "wrong type"},
			"unsupported":      {map[string]cty.Value{"text": cty.StringVal("a"), "colour": cty.StringVal("red")}, "colour", "unsupported"},
			"unknown value":    {map[string]cty.Value{"text": cty.UnknownVal(cty.String)}, "text", "not known"},
			"arg error in Run": {map[string]cty.Value{"text": cty.StringVal("")}, "text", "must not be empty"},
		} {
			t.Run(name, func(t *testing.T) {
				resp := call(tc.args)
				require.True(t, resp.Diagnostics.HasErrors())
				assert.Equal(t, tc.attr, resp.Diagnostics[0].Attribute)
				assert.Contains(t, resp.Diagnostics[0].Summary+" "+resp.Diagnostics[0].Detail, tc.want)
			})
		}

		resp = call(map[string]cty.Value{"text": cty.StringVal("plain-error")})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Empty(t, resp.Diagnostics[0].Attribute)
		assert.Equal(t, "echo failed", resp.Diagnostics[0].Summary)
		assert.Equal(t, "something broke", resp.Diagnostics[0].Detail)

		d, err := p.Invoke(ctx, plugins.InvokeRequest{Action: "drain", Args: cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s1"), "timeout": cty.StringVal("soon")})}), error(nil)
		require.NoError(t, err)
		require.True(t, d.Diagnostics.HasErrors())
		assert.Equal(t, "timeout", d.Diagnostics[0].Attribute)
		assert.Contains(t, d.Diagnostics[0].Detail, `"soon" is not a duration`)

		resp = p.Invoke(ctx, plugins.InvokeRequest{Action: "nope", Args: cty.EmptyObjectVal})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics[0].Summary, `no action "nope"`)
	})
}

func TestInvalidResultIsReported(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "enable", Args: cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s1")})})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics[0].Summary, "invalid result for enable")
		assert.Contains(t, resp.Diagnostics[0].Detail, `attribute "state" is required`)
	})
}

func TestPanicBecomesDiagnostic(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "boom", Args: cty.EmptyObjectVal})
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics[0].Summary, "panicked in boom")
		assert.Contains(t, resp.Diagnostics[0].Detail, "nil map")
		// The plugin is still alive.
		resp = p.Invoke(context.Background(), plugins.InvokeRequest{Action: "status", Args: cty.EmptyObjectVal})
		require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		assert.Equal(t, 0, resp.Result.GetAttr("servers").LengthInt())
	})
}

func TestCheck(t *testing.T) {
	providers(t, func(t *testing.T, _ *fakeLB, p plugins.Provider) {
		configure(t, p)
		ctx := context.Background()
		cr := p.Check(ctx, plugins.InvokeRequest{Action: "drain", Args: cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s1")})})
		require.False(t, cr.Diagnostics.HasErrors(), "%v", cr.Diagnostics.Err())
		assert.Equal(t, plugins.CheckApplied, cr.State)
		assert.Equal(t, "in maint", cr.Detail)
		assert.Equal(t, "maint", cr.Result.GetAttr("state").AsString())

		cr = p.Check(ctx, plugins.InvokeRequest{Action: "drain", Args: cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s2")})})
		assert.Equal(t, plugins.CheckNotApplied, cr.State)
		assert.Equal(t, "ready", cr.Detail)

		cr = p.Check(ctx, plugins.InvokeRequest{Action: "status", Args: cty.EmptyObjectVal})
		assert.Equal(t, plugins.CheckUnknown, cr.State)
		assert.False(t, cr.Diagnostics.HasErrors())

		cr = p.Check(ctx, plugins.InvokeRequest{Action: "drain", Args: cty.EmptyObjectVal})
		require.True(t, cr.Diagnostics.HasErrors())
		assert.Equal(t, "server", cr.Diagnostics[0].Attribute)
	})
}

func TestCancelReachesHandler(t *testing.T) {
	providers(t, func(t *testing.T, fake *fakeLB, p plugins.Provider) {
		configure(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan plugins.InvokeResponse, 1)
		go func() {
			done <- p.Invoke(ctx, plugins.InvokeRequest{Action: "wait", Args: cty.ObjectVal(map[string]cty.Value{"for": cty.StringVal("ever")})})
		}()
		select {
		case <-fake.started:
		case <-time.After(5 * time.Second):
			t.Fatal("the action did not start")
		}
		cancel()
		select {
		case err := <-fake.cancelled:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context was not cancelled")
		}
		resp := <-done
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics.Err().Error(), "context canceled")
	})
}

func TestValidate(t *testing.T) {
	good := func() *sdk.Plugin { return newFakeLB().plugin() }
	require.NoError(t, good().Validate())

	for name, tc := range map[string]struct {
		mutate func(p *sdk.Plugin)
		want   string
	}{
		"no name":        {func(p *sdk.Plugin) { p.Name = "" }, "no name"},
		"bad kind":       {func(p *sdk.Plugin) { p.Kind = "queue" }, `unknown plugin kind "queue"`},
		"missing action": {func(p *sdk.Plugin) { p.Actions = p.Actions[1:] }, `missing standard action "drain"`},
		"no run":         {func(p *sdk.Plugin) { p.Actions[4].Run = nil }, "boom has no Run"},
		"twice":          {func(p *sdk.Plugin) { p.Actions = append(p.Actions, p.Actions[4]) }, "boom is declared twice"},
		"copied contract schema": {func(p *sdk.Plugin) {
			c := *p.Actions[0].Schema
			p.Actions[0] = &sdk.Action{Schema: &c, Run: p.Actions[0].Run}
		}, "must use schema.ContractAction"},
		"bad undo": {func(p *sdk.Plugin) {
			p.Actions[4].Schema = &schema.Action{Name: "boom", Undo: "unboom", Args: &schema.Object{}, Result: &schema.Object{}}
		}, `undo action "unboom"`},
	} {
		t.Run(name, func(t *testing.T) {
			p := good()
			tc.mutate(p)
			err := p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			// An invalid plugin served in process reports the same error on every call.
			pr := sdk.NewProvider(p)
			_, serr := pr.Schema(context.Background())
			require.Error(t, serr)
			assert.True(t, pr.Invoke(context.Background(), plugins.InvokeRequest{Action: "status"}).Diagnostics.HasErrors())
		})
	}
}

func TestResult(t *testing.T) {
	drain := schema.ContractAction(schema.KindLoadBalancer, "drain")
	v, err := sdk.Result(drain, map[string]cty.Value{"server": cty.StringVal("a"), "state": cty.StringVal("maint")})
	require.NoError(t, err)
	assert.True(t, v.Type().Equals(drain.Result.ImpliedType()))

	_, err = sdk.Result(drain, map[string]cty.Value{"server": cty.StringVal("a")})
	assert.ErrorContains(t, err, `attribute "state" is required`)
	_, err = sdk.Result(drain, map[string]cty.Value{"server": cty.StringVal("a"), "state": cty.ListValEmpty(cty.String)})
	assert.ErrorContains(t, err, "state: wrong type")
	_, err = sdk.Result(drain, map[string]cty.Value{"server": cty.StringVal("a"), "state": cty.StringVal("x"), "extra": cty.True})
	assert.ErrorContains(t, err, "unsupported attribute")

	// Optional attributes left out become null of their type.
	v, err = sdk.Result(echoAction, map[string]cty.Value{"text": cty.StringVal("t")})
	require.NoError(t, err)
	assert.True(t, v.GetAttr("token").IsNull())
	assert.True(t, v.Type().Equals(echoAction.Result.ImpliedType()))

	// A number converts to the schema's string, as HCL would.
	v, err = sdk.Result(echoAction, map[string]cty.Value{"text": cty.NumberIntVal(3)})
	require.NoError(t, err)
	assert.Equal(t, "3", v.GetAttr("text").AsString())
}

func TestArgErrorMessage(t *testing.T) {
	err := sdk.ArgError("timeout", "%q is too long", "9h")
	assert.Equal(t, `timeout: "9h" is too long`, err.Error())
	wrapped := fmt.Errorf("draining: %w", err)
	p := sdk.NewProvider(&sdk.Plugin{
		Name: "x", Kind: schema.KindLoadBalancer,
		Actions: []*sdk.Action{
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "drain"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, wrapped }},
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "enable"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "status"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "metrics"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "preflight"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
			{Schema: schema.ContractAction(schema.KindLoadBalancer, "verify"), Run: func(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }},
		},
	})
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "drain", Args: cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal("s")})})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "timeout", resp.Diagnostics[0].Attribute, "a wrapped ArgError keeps its attribute")
}

func TestRequestHelpers(t *testing.T) {
	r := &sdk.Request{Action: "x", Args: cty.ObjectVal(map[string]cty.Value{
		"s": cty.StringVal("hi"), "n": cty.NumberFloatVal(3.7), "b": cty.False, "d": cty.StringVal("1m30s"),
		"bad": cty.StringVal("later"), "neg": cty.StringVal("-1s"),
		"ns": cty.NullVal(cty.String), "nn": cty.NullVal(cty.Number), "nb": cty.NullVal(cty.Bool),
	})}
	assert.Equal(t, "hi", r.String("s"))
	assert.Equal(t, "", r.String("ns"))
	assert.Equal(t, "", r.String("absent"))
	assert.Equal(t, 3, r.Int("n", 9))
	assert.Equal(t, 9, r.Int("nn", 9))
	assert.False(t, r.Bool("b", true))
	assert.True(t, r.Bool("nb", true))
	d, err := r.Duration("d", 0)
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, d)
	d, err = r.Duration("ns", 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, d)
	_, err = r.Duration("bad", 0)
	assert.ErrorContains(t, err, "not a duration")
	_, err = r.Duration("neg", 0)
	assert.ErrorContains(t, err, "negative")

	var ok struct {
		S  string  `cty:"s"`
		N  float64 `cty:"n"`
		NS string  `cty:"ns"`
		NB *bool   `cty:"nb"`
	}
	require.NoError(t, r.Decode(&ok))
	assert.Equal(t, "hi", ok.S)
	assert.Equal(t, 3.7, ok.N)
	assert.Nil(t, ok.NB)
	var typo struct {
		S string `cty:"sss"`
	}
	assert.ErrorContains(t, r.Decode(&typo), `no argument "sss"`)
	var wrong struct {
		S bool `cty:"s"`
	}
	assert.Error(t, r.Decode(&wrong))
	assert.Error(t, r.Decode(ok))
}
