package dbkit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/schema"
)

func argPath(t *testing.T, err error) string {
	t.Helper()
	p, ok := sdk.ArgPath(err)
	require.True(t, ok, "an ArgError: %v", err)
	return p
}

func TestName(t *testing.T) {
	n, err := dbkit.Name("to", "app_v2", 63)
	require.NoError(t, err)
	assert.Equal(t, "app_v2", n)
	for _, bad := range []string{"", "2app", "app-v2", "a;drop", strings.Repeat("a", 64)} {
		_, err := dbkit.Name("to", bad, 63)
		require.Error(t, err, bad)
		assert.Equal(t, "to", argPath(t, err))
	}
	_, err = dbkit.Name("to", strings.Repeat("a", 64), 64)
	assert.NoError(t, err)
}

func TestKeepExisting(t *testing.T) {
	req := func(replace bool) *sdk.Request {
		return &sdk.Request{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"replace": cty.BoolVal(replace)})}
	}
	keep, err := dbkit.KeepExisting(req(false), "b", true)
	assert.True(t, keep)
	assert.NoError(t, err)
	keep, err = dbkit.KeepExisting(req(false), "database \"b\"", false)
	assert.False(t, keep)
	assert.Equal(t, "to", argPath(t, err), "someone else's database is not overwritten")
	assert.Contains(t, err.Error(), `database "b" exists and is not a copy made by upshift`)
	for _, ours := range []bool{true, false} {
		keep, err = dbkit.KeepExisting(req(true), "b", ours)
		assert.False(t, keep, "replace = true replaces")
		assert.NoError(t, err)
	}
}

func TestCheckCopyAndMayDrop(t *testing.T) {
	res := func() (cty.Value, error) { return cty.StringVal("r"), nil }
	cr, err := dbkit.CheckCopy("b", true, true, res)
	require.NoError(t, err)
	assert.Equal(t, plugins.CheckApplied, cr.State)
	assert.Equal(t, cty.StringVal("r"), cr.Result)
	cr, _ = dbkit.CheckCopy("b", true, false, res)
	assert.Equal(t, plugins.CheckUnknown, cr.State)
	cr, _ = dbkit.CheckCopy("b", false, false, res)
	assert.Equal(t, plugins.CheckNotApplied, cr.State)

	may, err := dbkit.MayDrop("b", false, false)
	assert.False(t, may)
	assert.NoError(t, err)
	may, err = dbkit.MayDrop("b", true, false)
	assert.False(t, may)
	assert.Equal(t, "name", argPath(t, err))
	may, err = dbkit.MayDrop("b", true, true)
	assert.True(t, may)
	assert.NoError(t, err)
}

type fakeDB struct{}

func (fakeDB) Configure(context.Context, plugins.ConfigureRequest) error { return nil }
func (fakeDB) Backup(context.Context, *sdk.Request) (cty.Value, error)   { return cty.NilVal, nil }
func (fakeDB) Copy(context.Context, *sdk.Request) (cty.Value, error)     { return cty.NilVal, nil }
func (fakeDB) CheckCopy(context.Context, *sdk.Request) (plugins.CheckResponse, error) {
	return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
}
func (fakeDB) ReadOnly(context.Context, *sdk.Request) (cty.Value, error) { return cty.NilVal, nil }
func (fakeDB) Drop(context.Context, *sdk.Request) (cty.Value, error)     { return cty.NilVal, nil }
func (fakeDB) Check(context.Context, *sdk.Request) (cty.Value, error)    { return cty.NilVal, nil }

func TestPluginDeclaresTheContract(t *testing.T) {
	p := dbkit.Plugin("x", "0.0.1", nil, fakeDB{})
	require.NoError(t, p.Validate())
	assert.Len(t, p.Actions, 5)
	var copyAction *sdk.Action
	for _, a := range p.Actions {
		if a.Schema.Name == "copy" {
			copyAction = a
		}
	}
	require.NotNil(t, copyAction)
	assert.NotNil(t, copyAction.Check, "copy has its check")

	v, err := dbkit.Dropped(&sdk.Request{Action: "drop"}, true, nil)
	require.NoError(t, err)
	assert.True(t, v.GetAttr("dropped").True())
}

func TestServerConfigDecodes(t *testing.T) {
	cfg := dbkit.ServerConfig("the DSN", "the timeout")
	require.NoError(t, cfg.Validate())
	assert.True(t, cfg.Attribute("dsn").Sensitive)
	assert.True(t, cfg.Attribute("dsn").Required)
	assert.Equal(t, "the timeout", cfg.Attribute("timeout").Description)

	v, probs := schema.Conform(cfg, cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal("postgres://a/b")}), true)
	require.Empty(t, probs)
	var s dbkit.Server
	require.NoError(t, sdk.Decode(v, &s))
	assert.Equal(t, dbkit.Server{DSN: "postgres://a/b", Timeout: 30 * time.Second}, s)

	v, _ = schema.Conform(cfg, cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal("x"), "timeout": cty.StringVal("0s")}), true)
	path, _ := sdk.ArgPath(sdk.Decode(v, &s))
	assert.Equal(t, "timeout", path, "a zero timeout is refused")
}
