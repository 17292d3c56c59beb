package nodekit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/schema"
)

func TestConfigValueKeepsTheJSONText(t *testing.T) {
	file := []byte(`{"workers": 4, "limits": {"rps": 2.5, "tags": ["a", "b"]}, "name": "node-1", "debug": false, "proxy": null}`)
	for key, want := range map[string]string{
		"workers": "4", "limits": `{"rps": 2.5, "tags": ["a", "b"]}`, "name": `"node-1"`, "debug": "false", "proxy": "null",
	} {
		v, ok, err := nodekit.ConfigValue(file, key)
		require.NoError(t, err, key)
		assert.True(t, ok, key)
		assert.Equal(t, want, v, key)
	}
	v, ok, err := nodekit.ConfigValue(file, "missing")
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Empty(t, v)
	_, _, err = nodekit.ConfigValue([]byte(`["not", "an", "object"]`), "x")
	assert.ErrorContains(t, err, "not a JSON object")
}

func TestRestoreConfigValue(t *testing.T) {
	file := []byte(`{"workers": "8", "name": "node-1"}`)

	out, changed, err := nodekit.RestoreConfigValue(file, "workers", "4", true)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.JSONEq(t, `{"workers": 4, "name": "node-1"}`, string(out), "a number is put back as a number")
	assert.Equal(t, byte('\n'), out[len(out)-1])

	again, changed, err := nodekit.RestoreConfigValue(out, "workers", "4", true)
	require.NoError(t, err)
	assert.False(t, changed, "already as it was")
	assert.Equal(t, string(out), string(again), "and the bytes untouched")

	out, changed, err = nodekit.RestoreConfigValue(file, "limits", `{"rps": 2.5, "tags": ["a"]}`, true)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.JSONEq(t, `{"workers": "8", "name": "node-1", "limits": {"rps": 2.5, "tags": ["a"]}}`, string(out))

	// The value as set_config read it from an operator's file (tabs), and
	// the file since indented anew: already as it was.
	again, changed, err = nodekit.RestoreConfigValue(out, "limits", "{\n\t\"rps\": 2.5,\n\t\"tags\": [\"a\"]\n}", true)
	require.NoError(t, err)
	assert.False(t, changed, "the same value, laid out differently, is not a change")
	assert.Equal(t, string(out), string(again))

	out, changed, err = nodekit.RestoreConfigValue(file, "workers", "", false)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.JSONEq(t, `{"name": "node-1"}`, string(out), "a key that was not there is removed")
	same, changed, err := nodekit.RestoreConfigValue(file, "absent", "", false)
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, string(file), string(same))

	_, _, err = nodekit.RestoreConfigValue(file, "workers", "four", true)
	assert.EqualError(t, err, `the value to put back for "workers" is not JSON`)
	_, _, err = nodekit.RestoreConfigValue([]byte("workers = 4"), "workers", "4", true)
	assert.ErrorContains(t, err, "not a JSON object")
}

type pfNode struct{ nodekit.Node }

// pfDriver serves nodes from memory: each node's config file as bytes, and
// whether it runs. It can read config back and tell whether it runs, but
// not remove files nor say whether one exists (a plugin that cannot undo
// touch).
type pfDriver struct {
	mu       sync.Mutex
	config   map[string][]byte
	running  map[string]bool
	readErr  error
	runErr   error
	restored []string
}

func (d *pfDriver) Start(context.Context, *pfNode, time.Duration, nodekit.Progress) error {
	return errors.New("preflight started a node")
}
func (d *pfDriver) Stop(context.Context, *pfNode, time.Duration, nodekit.Progress) error {
	return errors.New("preflight stopped a node")
}
func (d *pfDriver) Exec(context.Context, *pfNode, nodekit.Command, time.Duration) (nodekit.ExecResult, error) {
	return nodekit.ExecResult{}, errors.New("preflight ran a command")
}
func (d *pfDriver) SetConfig(_ context.Context, n *pfNode, key, value string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, changed, err := nodekit.RestoreConfigValue(d.config[n.Name], key, fmt.Sprintf("%q", value), true)
	if err == nil {
		d.config[n.Name] = out
	}
	return changed, err
}
func (d *pfDriver) Touch(context.Context, *pfNode, string) error { return nil }
func (d *pfDriver) BackupData(context.Context, *pfNode, string) (int64, error) {
	return 0, errors.New("preflight backed up")
}
func (d *pfDriver) Running(_ context.Context, n *pfNode) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[n.Name], d.runErr
}
func (d *pfDriver) ReadConfig(_ context.Context, n *pfNode, key string) (string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readErr != nil {
		return "", false, d.readErr
	}
	return nodekit.ConfigValue(d.config[n.Name], key)
}
func (d *pfDriver) RestoreConfig(_ context.Context, n *pfNode, key, value string, ok bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, changed, err := nodekit.RestoreConfigValue(d.config[n.Name], key, value, ok)
	if err == nil {
		d.config[n.Name] = out
		d.restored = append(d.restored, key)
	}
	return changed, err
}

// healthServer answers /healthz with code and body.
func healthServer(t *testing.T, code int, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s.URL + "/healthz"
}

func pfPool(t *testing.T, d nodekit.Driver[*pfNode], nodes []*pfNode, configure bool) plugins.Provider {
	t.Helper()
	kit := nodekit.New[*pfNode]("pf", d)
	p := sdk.NewProvider(&sdk.Plugin{
		Name: "pf", Version: "0.0.1", Kind: schema.KindNodePool,
		Configure: func(context.Context, plugins.ConfigureRequest) error { return kit.SetNodes(nodes, 0, 0) },
		Actions:   kit.Actions(),
	})
	if configure {
		require.NoError(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: cty.ListValEmpty(cty.DynamicPseudoType)}).Err())
	}
	return p
}

func pfPreflight(p plugins.Provider, version, target string, names ...string) plugins.InvokeResponse {
	list := cty.ListValEmpty(cty.String)
	if len(names) > 0 {
		vals := make([]cty.Value, len(names))
		for i, n := range names {
			vals[i] = cty.StringVal(n)
		}
		list = cty.ListVal(vals)
	}
	s := func(v string) cty.Value {
		if v == "" {
			return cty.NullVal(cty.String)
		}
		return cty.StringVal(v)
	}
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: "preflight", Args: cty.ObjectVal(map[string]cty.Value{
		"nodes": list, "version": s(version), "target": s(target),
	})})
}

func TestPreflightNodes(t *testing.T) {
	v1 := healthServer(t, 200, `{"status":"ok","name":"n1","version":"1","pid":11}`)
	v2 := healthServer(t, 200, `{"status":"ok","name":"n2","version":2,"pid":12}`)
	starting := healthServer(t, 503, `{"status":"starting","name":"n3","version":"1"}`+"\n")
	noVersion := healthServer(t, 200, "ok\n")
	nodes := []*pfNode{
		{nodekit.Node{Name: "n1", HealthURL: v1, PidFile: "/run/n1.pid"}},
		{nodekit.Node{Name: "n2", HealthURL: v2, PidFile: "/run/n2.pid"}},
		{nodekit.Node{Name: "n3", HealthURL: starting, PidFile: "/run/n3.pid"}},
		{nodekit.Node{Name: "n4", HealthURL: noVersion, PidFile: "/run/n4.pid"}},
		{nodekit.Node{Name: "n5", PidFile: "/run/n5.pid"}}, // no health URL
	}
	d := &pfDriver{config: map[string][]byte{}, running: map[string]bool{}}
	for _, n := range nodes {
		d.config[n.Name] = []byte(`{"version": "1"}`)
		d.running[n.Name] = true
	}
	p := pfPool(t, d, nodes, true)
	problems := func(r plugins.InvokeResponse) string {
		t.Helper()
		require.True(t, r.Diagnostics.HasErrors())
		require.Len(t, r.Diagnostics, 1)
		return r.Diagnostics[0].Detail
	}

	r := pfPreflight(p, "1", "2", "n1", "n5")
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, r.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"versions": cty.MapVal(map[string]cty.Value{"n1": cty.StringVal("1")})})),
		"a node without a health URL has no version to report: %#v", r.Result)

	assert.Equal(t, "1 problem(s):\n  - the nodes do not run one version: version 1 on n1; version 2 on n2",
		problems(pfPreflight(p, "", "", "n1", "n2")), "a JSON number version counts as its text")
	assert.Equal(t, "1 problem(s):\n"+`  - node n3: health check `+starting+` answers HTTP 503: {"status":"starting","name":"n3","version":"1"}`,
		problems(pfPreflight(p, "1", "", "n3")))
	assert.Equal(t, "1 problem(s):\n  - node n4: its health check reports no version, so it cannot be shown to run version 1",
		problems(pfPreflight(p, "1", "", "n4")))
	r = pfPreflight(p, "", "", "n4")
	require.NoError(t, r.Diagnostics.Err(), "no version asked for: nothing to show")

	d.mu.Lock()
	d.running["n2"] = false
	d.readErr = errors.New("/srv/n/config.json: permission denied")
	d.mu.Unlock()
	assert.Equal(t, "5 problem(s):\n"+
		"  - node n1: config file cannot be read: /srv/n/config.json: permission denied\n"+
		"  - node n2: config file cannot be read: /srv/n/config.json: permission denied\n"+
		`  - node n2: its process is not running as the plugin knows it (pid file "/run/n2.pid"): a node started by hand needs its pid written there, or stop and start cannot manage it`+"\n"+
		"  - node n2: runs version 2, not 1\n"+
		"  - node n7: not in this pool",
		problems(pfPreflight(p, "1", "", "n1", "n2", "n7")))
	d.mu.Lock()
	d.readErr, d.runErr = nil, errors.New("ps: no such command")
	d.mu.Unlock()
	assert.Equal(t, "1 problem(s):\n  - node n5: cannot tell whether it runs: ps: no such command", problems(pfPreflight(p, "", "", "n5")))
}

func TestPreflightNotConfigured(t *testing.T) {
	p := pfPool(t, &pfDriver{}, nil, false)
	for _, names := range [][]string{{"n1"}, nil} {
		r := pfPreflight(p, "", "", names...)
		require.True(t, r.Diagnostics.HasErrors(), "%v", names)
		assert.Equal(t, "the pf plugin was not configured", r.Diagnostics[0].Detail)
	}
}

// TestUndoActionsThroughTheKit: set_config reports what it replaced and
// restore_config puts it back; a driver that cannot read config back, tell
// whether a file exists or remove one says so instead of guessing.
func TestUndoActionsThroughTheKit(t *testing.T) {
	nodes := []*pfNode{{nodekit.Node{Name: "n1", DataDir: "/srv/n1/data"}}}
	d := &pfDriver{config: map[string][]byte{"n1": []byte(`{"version": 1, "name": "n1"}`)}, running: map[string]bool{}}
	p := pfPool(t, d, nodes, true)
	call := func(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
		args["node"] = cty.StringVal("n1")
		return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
	}

	r := call(p, "set_config", map[string]cty.Value{"key": cty.StringVal("version"), "value": cty.StringVal("2")})
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, r.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"changed": cty.True, "existed": cty.True, "previous": cty.StringVal("1")})), "%#v", r.Result)
	r = call(p, "restore_config", map[string]cty.Value{"key": cty.StringVal("version"), "existed": r.Result.GetAttr("existed"), "previous": r.Result.GetAttr("previous")})
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("changed").True())
	assert.JSONEq(t, `{"version": 1, "name": "n1"}`, string(d.config["n1"]))

	// touch cannot tell whether it made the file: created is null, and
	// remove, asked to undo it, says it cannot.
	r = call(p, "touch", map[string]cty.Value{"path": cty.StringVal("marker")})
	require.NoError(t, r.Diagnostics.Err())
	assert.Equal(t, "/srv/n1/data/marker", r.Result.GetAttr("path").AsString())
	assert.True(t, r.Result.GetAttr("created").IsNull())
	r = call(p, "remove", map[string]cty.Value{"path": cty.StringVal("marker"), "created": cty.NullVal(cty.Bool)})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "node n1: the pf plugin cannot remove a file", r.Diagnostics[0].Detail)
	r = call(p, "remove", map[string]cty.Value{"path": cty.StringVal("marker"), "created": cty.False})
	require.NoError(t, r.Diagnostics.Err(), "a file that was there before is left, whatever the driver can do")
	assert.False(t, r.Result.GetAttr("removed").True())
	r = call(p, "remove", map[string]cty.Value{"path": cty.StringVal("../n2/marker"), "created": cty.True})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "path", r.Diagnostics[0].Attribute)

	// A driver that cannot read config back: set_config works, says it
	// does not know what was there, and restore_config refuses.
	bare := pfPool(t, &bareOnly{d: &pfDriver{config: map[string][]byte{"n1": []byte(`{"version": "1"}`)}}}, nodes, true)
	r = call(bare, "set_config", map[string]cty.Value{"key": cty.StringVal("version"), "value": cty.StringVal("2")})
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("existed").IsNull())
	assert.True(t, r.Result.GetAttr("previous").IsNull())
	r = call(bare, "restore_config", map[string]cty.Value{"key": cty.StringVal("version"), "existed": cty.True, "previous": cty.StringVal(`"1"`)})
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "node n1: the pf plugin cannot restore a config key", r.Diagnostics[0].Detail)
}

// bareOnly hides every optional interface of its driver.
type bareOnly struct{ d *pfDriver }

func (b *bareOnly) Start(ctx context.Context, n *pfNode, t time.Duration, p nodekit.Progress) error {
	return b.d.Start(ctx, n, t, p)
}
func (b *bareOnly) Stop(ctx context.Context, n *pfNode, t time.Duration, p nodekit.Progress) error {
	return b.d.Stop(ctx, n, t, p)
}
func (b *bareOnly) Exec(ctx context.Context, n *pfNode, c nodekit.Command, t time.Duration) (nodekit.ExecResult, error) {
	return b.d.Exec(ctx, n, c, t)
}
func (b *bareOnly) SetConfig(ctx context.Context, n *pfNode, k, v string) (bool, error) {
	return b.d.SetConfig(ctx, n, k, v)
}
func (b *bareOnly) Touch(ctx context.Context, n *pfNode, p string) error { return b.d.Touch(ctx, n, p) }
func (b *bareOnly) BackupData(ctx context.Context, n *pfNode, to string) (int64, error) {
	return b.d.BackupData(ctx, n, to)
}
