package nodekit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

type fakeNode struct {
	nodekit.Node
	running bool
}

// fake records what the kit hands it; inside counts calls in progress per
// node to catch two actions on one node at once.
type fake struct {
	mu      sync.Mutex
	inside  map[string]int
	overlap atomic.Bool
	touched []string
	cmd     nodekit.Command
	fail    error
	hold    time.Duration
}

func (f *fake) enter(n *fakeNode) func() {
	f.mu.Lock()
	f.inside[n.Name]++
	if f.inside[n.Name] > 1 {
		f.overlap.Store(true)
	}
	f.mu.Unlock()
	time.Sleep(f.hold)
	return func() { f.mu.Lock(); f.inside[n.Name]--; f.mu.Unlock() }
}

func (f *fake) Start(_ context.Context, n *fakeNode, timeout time.Duration, progress nodekit.Progress) error {
	defer f.enter(n)()
	progress("start within %s", timeout)
	n.running = true
	return f.fail
}

func (f *fake) Stop(_ context.Context, n *fakeNode, _ time.Duration, _ nodekit.Progress) error {
	defer f.enter(n)()
	n.running = false
	return f.fail
}

func (f *fake) Exec(_ context.Context, n *fakeNode, cmd nodekit.Command, _ time.Duration) (nodekit.ExecResult, error) {
	f.cmd = cmd
	return nodekit.ExecResult{ExitCode: 0, Stdout: "out"}, f.fail
}

func (f *fake) SetConfig(context.Context, *fakeNode, string, string) (bool, error) {
	return true, f.fail
}

func (f *fake) Touch(_ context.Context, _ *fakeNode, p string) error {
	f.touched = append(f.touched, p)
	return f.fail
}

func (f *fake) BackupData(context.Context, *fakeNode, string) (int64, error) {
	return 0, sdk.ArgError("to", "node says no")
}

func (f *fake) Running(_ context.Context, n *fakeNode) (bool, error) { return n.running, nil }

func newPool(t *testing.T, f *fake, configure bool) plugins.Provider {
	t.Helper()
	kit := nodekit.New[*fakeNode]("fake", f)
	p := sdk.NewProvider(&sdk.Plugin{
		Name: "fake", Version: "0.0.1", Kind: schema.KindNodePool,
		Configure: func(context.Context, plugins.ConfigureRequest) error {
			return kit.SetNodes([]*fakeNode{
				{Node: nodekit.Node{Name: "b", DataDir: "/srv/b"}},
				{Node: nodekit.Node{Name: "a", DataDir: "/srv/a"}},
			}, 7*time.Second, 0)
		},
		Actions: kit.Actions(),
	})
	if configure {
		nodes := cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("a")})})
		require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: nodes}).HasErrors())
	}
	return p
}

func call(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
}

func TestKitGuards(t *testing.T) {
	f := &fake{inside: map[string]int{}}
	resp := call(newPool(t, f, false), "start", map[string]cty.Value{"node": cty.StringVal("a")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "the fake plugin was not configured", resp.Diagnostics[0].Detail)

	p := newPool(t, f, true)
	resp = call(p, "stop", map[string]cty.Value{"node": cty.StringVal("c")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "node", resp.Diagnostics[0].Attribute)
	assert.Equal(t, `no node named "c" in this pool (nodes: [a b])`, resp.Diagnostics[0].Detail)
}

func TestKitLocksOneNodeAtATime(t *testing.T) {
	f := &fake{inside: map[string]int{}, hold: 20 * time.Millisecond}
	p := newPool(t, f, true)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			action := []string{"start", "stop"}[i%2]
			resp := call(p, action, map[string]cty.Value{"node": cty.StringVal("a")})
			assert.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
		}(i)
	}
	wg.Wait()
	assert.False(t, f.overlap.Load(), "two actions ran on node a at once")
}

func TestKitActions(t *testing.T) {
	f := &fake{inside: map[string]int{}}
	p := newPool(t, f, true)
	var lines []string
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "start",
		Args: cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("a")}), Progress: func(l string) { lines = append(lines, l) }})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, "a", resp.Result.GetAttr("node").AsString())
	assert.Equal(t, []string{"start within 7s"}, lines, "the configured default timeout")

	cr := p.Check(context.Background(), plugins.InvokeRequest{Action: "start", Args: cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("a")})})
	assert.Equal(t, plugins.CheckApplied, cr.State)
	cr = p.Check(context.Background(), plugins.InvokeRequest{Action: "stop", Args: cty.ObjectVal(map[string]cty.Value{"node": cty.StringVal("a")})})
	assert.Equal(t, plugins.CheckNotApplied, cr.State)

	resp = call(p, "exec", map[string]cty.Value{"node": cty.StringVal("a")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "command", resp.Diagnostics[0].Attribute)
	resp = call(p, "exec", map[string]cty.Value{"node": cty.StringVal("a"), "shell": cty.StringVal("true"),
		"command": cty.ListVal([]cty.Value{cty.StringVal("true")})})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "shell", resp.Diagnostics[0].Attribute)
	resp = call(p, "exec", map[string]cty.Value{"node": cty.StringVal("a"), "shell": cty.StringVal("echo hi"),
		"env": cty.MapVal(map[string]cty.Value{"A": cty.StringVal("1")})})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, nodekit.Command{Shell: "echo hi", Env: map[string]string{"A": "1"}}, f.cmd)
	assert.Equal(t, "out", resp.Result.GetAttr("stdout").AsString())

	resp = call(p, "touch", map[string]cty.Value{"node": cty.StringVal("a"), "path": cty.StringVal("../b/x")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "path", resp.Diagnostics[0].Attribute)
	resp = call(p, "touch", map[string]cty.Value{"node": cty.StringVal("a"), "path": cty.StringVal("m/rolling-upgrade")})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, []string{"/srv/a/m/rolling-upgrade"}, f.touched)

	resp = call(p, "wait_healthy", map[string]cty.Value{"node": cty.StringVal("a"), "successes": cty.NumberIntVal(0)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "successes", resp.Diagnostics[0].Attribute)

	resp = call(p, "backup_data", map[string]cty.Value{"node": cty.StringVal("a"), "to": cty.StringVal("rel")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "to", resp.Diagnostics[0].Attribute)
	resp = call(p, "backup_data", map[string]cty.Value{"node": cty.StringVal("a"), "to": cty.StringVal("/b")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "to", resp.Diagnostics[0].Attribute, "a driver's ArgError is passed on")
	assert.Equal(t, "node says no", resp.Diagnostics[0].Detail)

	f.fail = errors.New("disk full")
	resp = call(p, "set_config", map[string]cty.Value{"node": cty.StringVal("b"), "key": cty.StringVal("k"), "value": cty.StringVal("v")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "node b: disk full", resp.Diagnostics[0].Detail, "errors name the node once")
}

func TestSetNodesRefusesTwins(t *testing.T) {
	kit := nodekit.New[*fakeNode]("fake", &fake{})
	err := kit.SetNodes([]*fakeNode{{Node: nodekit.Node{Name: "a"}}, {Node: nodekit.Node{Name: "a"}}}, 0, 0)
	path, ok := sdk.ArgPath(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, "nodes", path)
}

func TestFromValue(t *testing.T) {
	v := cty.ObjectVal(map[string]cty.Value{
		"name": cty.StringVal("n1"), "address": cty.StringVal("127.0.0.1:9"), "config_file": cty.StringVal("/c"),
		"data_dir": cty.StringVal("/d"), "pid_file": cty.StringVal("/p"), "log_file": cty.StringVal("/l"),
		"command": cty.TupleVal([]cty.Value{cty.StringVal("platformd"), cty.StringVal("serve")}),
	})
	n, err := nodekit.FromValue(v, "/admin/ro")
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:9/healthz", n.HealthURL)
	assert.Equal(t, "http://127.0.0.1:9/admin/ro", n.ReadOnlyURL)
	assert.Equal(t, []string{"platformd", "serve"}, n.Command)

	_, err = nodekit.FromValue(v, "/admin/ro", "host")
	assert.EqualError(t, err, `node "n1" has no host; a node needs name, address, config_file, data_dir, pid_file, log_file, host and command`)
}

func TestInDataDir(t *testing.T) {
	n := &nodekit.Node{DataDir: "/srv/data/"}
	p, err := n.InDataDir("a/b")
	require.NoError(t, err)
	assert.Equal(t, "/srv/data/a/b", p)
	for _, bad := range []string{"", "/etc/passwd", "..", "../data2/x", "a/../../x", "."} {
		_, err := n.InDataDir(bad)
		assert.Error(t, err, bad)
	}
}
