package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
)

var binPath, binSum string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "upshift-testkit-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer host.CleanupAll()
	if binPath, binSum, err = hosttest.BuildTestkit(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// TestBinary runs the built plugin through host.Launch: the flaky counter
// and the record log survive a restart of the plugin process, and crash
// really ends it.
func TestBinary(t *testing.T) {
	stateDir := t.TempDir()
	launch := func() *host.Process {
		p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: binPath, SHA256: binSum, Logger: hclog.NewNullLogger()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		d := p.Configure(context.Background(), plugins.ConfigureRequest{
			Config: cty.ObjectVal(map[string]cty.Value{"state_dir": cty.StringVal(stateDir)}),
			Nodes:  nodes("a"),
		})
		require.False(t, d.HasErrors(), "%v", d.Err())
		return p.(*host.Process)
	}
	flaky := cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal("f"), "failures": cty.NumberIntVal(1)})
	record := cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal("r")})
	ctx := context.Background()

	p := launch()
	require.True(t, p.Invoke(ctx, plugins.InvokeRequest{Action: "flaky", Args: flaky}).Diagnostics.HasErrors())
	ok(t, p.Invoke(ctx, plugins.InvokeRequest{Action: "record", Args: record}))
	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "crash", Args: cty.ObjectVal(map[string]cty.Value{"after": cty.NullVal(cty.String)})})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics.Err().Error(), "exited during crash")
	assert.True(t, p.Exited())

	p = launch()
	assert.Equal(t, int64(2), bigInt(ok(t, p.Invoke(ctx, plugins.InvokeRequest{Action: "flaky", Args: flaky})).GetAttr("attempts")))
	cr := p.Check(ctx, plugins.InvokeRequest{Action: "record", Args: record})
	assert.Equal(t, plugins.CheckApplied, cr.State)
	ok(t, p.Invoke(ctx, plugins.InvokeRequest{Action: "record", Args: record}))
	b, err := os.ReadFile(filepath.Join(stateDir, RecordFile))
	require.NoError(t, err)
	assert.Equal(t, "r 1\nr 2\n", string(b))
	res := ok(t, p.Invoke(ctx, plugins.InvokeRequest{Action: "echo", Args: cty.ObjectVal(map[string]cty.Value{"value": cty.StringVal("v"), "secret": cty.StringVal("pw")})}))
	assert.Equal(t, "pw", res.GetAttr("secret").AsString())
}
