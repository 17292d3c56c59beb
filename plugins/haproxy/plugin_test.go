package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

// provider serves a fresh plugin over real in-process gRPC, configured for
// the lab (with the lab's state file when withStateFile).
func (l *lab) provider(t *testing.T, withStateFile bool) plugins.Provider {
	t.Helper()
	p := sdktest.Provider(t, newPlugin())
	cfg := map[string]cty.Value{
		"socket":     cty.StringVal(l.inst.Socket),
		"backend":    cty.StringVal(l.inst.Backend),
		"state_file": cty.NullVal(cty.String),
		"timeout":    cty.StringVal("2s"),
	}
	if withStateFile {
		cfg["state_file"] = cty.StringVal(l.inst.StateFile)
	}
	require.NoError(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(cfg)}).Err())
	return p
}

// call invokes an action with args (missing optional arguments null) and
// returns the response and the progress lines.
func call(t *testing.T, p plugins.Provider, action string, args map[string]cty.Value) (plugins.InvokeResponse, []string) {
	t.Helper()
	a := schema.ContractAction(schema.KindLoadBalancer, action)
	require.NotNil(t, a)
	full := map[string]cty.Value{}
	for _, attr := range a.Args.Attributes {
		full[attr.Name] = cty.NullVal(attr.Type)
	}
	for k, v := range args {
		full[k] = v
	}
	obj := cty.EmptyObjectVal
	if len(full) > 0 {
		obj = cty.ObjectVal(full)
	}
	var mu sync.Mutex
	var lines []string
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: obj, Progress: func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}})
	mu.Lock()
	defer mu.Unlock()
	return resp, lines
}

func check(t *testing.T, p plugins.Provider, action, server string) plugins.CheckResponse {
	t.Helper()
	a := schema.ContractAction(schema.KindLoadBalancer, action)
	full := map[string]cty.Value{}
	for _, attr := range a.Args.Attributes {
		full[attr.Name] = cty.NullVal(attr.Type)
	}
	full["server"] = cty.StringVal(server)
	return p.Check(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(full)})
}

func serverArgs(server string) map[string]cty.Value {
	return map[string]cty.Value{"server": cty.StringVal(server)}
}

func TestPluginSchemaIsTheContract(t *testing.T) {
	t.Parallel()
	p := sdktest.Provider(t, newPlugin())
	s, err := p.Schema(context.Background())
	require.NoError(t, err)
	assert.Equal(t, schema.KindLoadBalancer, s.Kind)
	require.NoError(t, schema.CheckContract(s))
	assert.Equal(t, []string{"drain", "enable", "metrics", "preflight", "status", "verify"}, s.ActionNames())
	assert.Equal(t, []string{"socket", "backend", "state_file", "timeout", "session_idle"}, s.Config.Names())
}

func TestPluginConfigureErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  map[string]cty.Value
		attr string
	}{
		"missing socket": {map[string]cty.Value{"backend": cty.StringVal("app")}, "socket"},
		"bad timeout":    {map[string]cty.Value{"socket": cty.StringVal("/x.sock"), "backend": cty.StringVal("app"), "timeout": cty.StringVal("soon")}, "timeout"},
		"relative state": {map[string]cty.Value{"socket": cty.StringVal("/x.sock"), "backend": cty.StringVal("app"), "state_file": cty.StringVal("state")}, "state_file"},
	} {
		t.Run(name, func(t *testing.T) {
			p := sdktest.Provider(t, newPlugin())
			diags := p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(tc.cfg)})
			require.True(t, diags.HasErrors())
			assert.Equal(t, tc.attr, diags[0].Attribute, "%v", diags)
		})
	}
}

func TestPluginDrainEnableStatusOverGRPC(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, true)

	server, done := l.slowRequest(t, 1000)
	assert.Equal(t, plugins.CheckNotApplied, check(t, p, "drain", server).State)
	start := time.Now()
	resp, lines := call(t, p, "drain", map[string]cty.Value{"server": cty.StringVal(server), "timeout": cty.StringVal("10s")})
	require.NoError(t, resp.Diagnostics.Err())
	assert.GreaterOrEqual(t, time.Since(start), 700*time.Millisecond, "drain returned before the slow request could have finished")
	assert.Zero(t, l.backends[server].InFlight(), "drain returned while the backend was still serving")
	assert.Equal(t, 200, <-done)
	assert.True(t, resp.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"server": cty.StringVal(server), "state": cty.StringVal("maint")})), "%#v", resp.Result)
	assert.Contains(t, strings.Join(lines, "\n"), "waiting for 1 in-flight session")

	cr := check(t, p, "drain", server)
	assert.Equal(t, plugins.CheckApplied, cr.State, cr.Detail)
	assert.Equal(t, "maint", cr.Result.GetAttr("state").AsString())

	// status: every server, with state, health and sessions.
	resp, _ = call(t, p, "status", nil)
	require.NoError(t, resp.Diagnostics.Err())
	got := map[string][3]string{}
	for it := resp.Result.GetAttr("servers").ElementIterator(); it.Next(); {
		_, s := it.Element()
		sessions := s.GetAttr("sessions").AsBigFloat().String()
		got[s.GetAttr("name").AsString()] = [3]string{s.GetAttr("state").AsString(), s.GetAttr("health").AsString(), sessions}
	}
	require.Len(t, got, 3)
	assert.Equal(t, [3]string{"maint", "unknown", "0"}, got[server])

	// drain twice: a no-op that still returns the result.
	resp, lines = call(t, p, "drain", serverArgs(server))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
	assert.Equal(t, []string{server + " is already in maintenance"}, lines)

	assert.Equal(t, plugins.CheckNotApplied, check(t, p, "enable", server).State)
	resp, _ = call(t, p, "enable", map[string]cty.Value{"server": cty.StringVal(server), "timeout": cty.StringVal("10s")})
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, "ready", resp.Result.GetAttr("state").AsString())
	assert.Equal(t, "UP", l.stat(t, server)["status"])
	cr = check(t, p, "enable", server)
	assert.Equal(t, plugins.CheckApplied, cr.State, cr.Detail)
	before := l.hits()
	l.get(t, 30)
	assert.Greater(t, l.hits()[server], before[server], "an enabled server got no traffic")
}

func TestPluginErrorsOverGRPC(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, false)

	// Unknown server: blames the argument, names the backend and its servers.
	resp, _ := call(t, p, "drain", serverArgs("s9"))
	require.Len(t, resp.Diagnostics, 1)
	d := resp.Diagnostics[0]
	assert.Equal(t, "server", d.Attribute)
	assert.Contains(t, d.Detail, `backend "app" has no server "s9"; its servers are s1, s2, s3`)
	cr := check(t, p, "enable", "s9")
	require.True(t, cr.Diagnostics.HasErrors())
	assert.Equal(t, "server", cr.Diagnostics[0].Attribute)

	// Bad duration: blames timeout.
	resp, _ = call(t, p, "drain", map[string]cty.Value{"server": cty.StringVal("s1"), "timeout": cty.StringVal("a while")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "timeout", resp.Diagnostics[0].Attribute)

	// min_in_service: refused with the servers named.
	l.backends["s2"].SetHealthy(false)
	l.backends["s3"].SetHealthy(false)
	l.waitStatus(t, "s2", "DOWN")
	l.waitStatus(t, "s3", "DOWN")
	resp, _ = call(t, p, "drain", serverArgs("s1"))
	require.True(t, resp.Diagnostics.HasErrors())
	msg := resp.Diagnostics.Err().Error()
	assert.Contains(t, msg, "refusing to drain s1")
	assert.Contains(t, msg, "s2 (ready, DOWN")
	assert.Contains(t, msg, "s3 (ready, DOWN")
	assert.Equal(t, "UP", l.stat(t, "s1")["status"])

	// Wrong socket: one line that names it.
	missing := t.TempDir() + "/admin.sock"
	bad := sdktest.Provider(t, newPlugin())
	require.NoError(t, bad.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{
		"socket": cty.StringVal(missing), "backend": cty.StringVal("app"),
		"state_file": cty.NullVal(cty.String), "timeout": cty.NullVal(cty.String),
	})}).Err())
	resp, _ = call(t, bad, "status", nil)
	require.True(t, resp.Diagnostics.HasErrors())
	msg = resp.Diagnostics.Err().Error()
	assert.NotContains(t, msg, "\n")
	assert.Contains(t, msg, "HAProxy admin socket "+missing+": no such file or directory")
}

func TestPluginDrainSurvivesReload(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, true)
	resp, _ := call(t, p, "drain", serverArgs("s2"))
	require.NoError(t, resp.Diagnostics.Err())
	require.NoError(t, l.inst.ReloadWithoutSave(context.Background()))
	assert.Equal(t, "MAINT", l.stat(t, "s2")["status"])
	cr := check(t, p, "drain", "s2")
	assert.Equal(t, plugins.CheckApplied, cr.State, cr.Detail)
}
