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

func copyReq(replace bool, runID string) *sdk.Request {
	run := cty.NullVal(cty.String)
	if runID != "" {
		run = cty.StringVal(runID)
	}
	return &sdk.Request{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"replace": cty.BoolVal(replace), "run_id": run})}
}

func TestKeepExistingAdoptsOnlyThisRunsCopy(t *testing.T) {
	const where = `database "b"`
	mine := dbkit.Existing{Marked: true, RunID: "run-1"}
	keep, err := dbkit.KeepExisting(copyReq(false, "run-1"), where, mine)
	assert.True(t, keep, "a resumed run adopts its own finished copy")
	assert.NoError(t, err)

	for name, c := range map[string]struct {
		e    dbkit.Existing
		run  string
		want string
	}{
		"another run's copy":     {dbkit.Existing{Marked: true, RunID: "run-0"}, "run-1", "is a finished copy made by run run-0, not by this run (run-1): it may be stale"},
		"a marker without a run": {dbkit.Existing{Marked: true}, "run-1", "names no run"},
		"no marker":              {dbkit.Existing{}, "run-1", "is not a copy made by upshift"},
		"no run_id given":        {mine, "", "this copy was given no run_id"},
	} {
		keep, err := dbkit.KeepExisting(copyReq(false, c.run), where, c.e)
		assert.False(t, keep, name)
		require.Error(t, err, name)
		assert.Equal(t, "to", argPath(t, err), name)
		assert.Contains(t, err.Error(), c.want, name)
		assert.Contains(t, err.Error(), "replace = true", name)

		keep, err = dbkit.KeepExisting(copyReq(true, c.run), where, c.e)
		assert.False(t, keep, "%s: replace = true replaces", name)
		assert.NoError(t, err, name)
	}

	// Without run ids on either side: the behaviour of before run ids.
	keep, err = dbkit.KeepExisting(copyReq(false, ""), where, dbkit.Existing{Marked: true})
	assert.True(t, keep)
	assert.NoError(t, err)

	// Foreign: never adopted nor replaced.
	foreign := dbkit.Existing{Marked: true, RunID: "run-1", Foreign: `is owned by role "alice"`}
	for _, replace := range []bool{false, true} {
		keep, err = dbkit.KeepExisting(copyReq(replace, "run-1"), where, foreign)
		assert.False(t, keep)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `database "b" is owned by role "alice": upshift neither adopts nor replaces it`)
	}

	_, err = dbkit.KeepExisting(copyReq(false, "bad id\n"), where, mine)
	assert.Equal(t, "run_id", argPath(t, err))
}

func TestCheckCopyAndMayDrop(t *testing.T) {
	res := func() (cty.Value, error) { return cty.StringVal("r"), nil }
	mine := dbkit.Existing{Marked: true, RunID: "run-1"}
	cr, err := dbkit.CheckCopy(copyReq(false, "run-1"), "b", true, mine, res)
	require.NoError(t, err)
	assert.Equal(t, plugins.CheckApplied, cr.State)
	assert.Equal(t, cty.StringVal("r"), cr.Result)
	cr, _ = dbkit.CheckCopy(copyReq(false, "run-2"), "b", true, mine, res)
	assert.Equal(t, plugins.CheckUnknown, cr.State, "another run's copy is not this step done")
	assert.Contains(t, cr.Detail, "made by run run-1")
	cr, _ = dbkit.CheckCopy(copyReq(false, "run-1"), "b", true, dbkit.Existing{}, res)
	assert.Equal(t, plugins.CheckUnknown, cr.State)
	cr, _ = dbkit.CheckCopy(copyReq(false, "run-1"), "b", false, dbkit.Existing{}, res)
	assert.Equal(t, plugins.CheckNotApplied, cr.State)

	drop := func(runID string) *sdk.Request {
		run := cty.NullVal(cty.String)
		if runID != "" {
			run = cty.StringVal(runID)
		}
		return &sdk.Request{Action: "drop", Args: cty.ObjectVal(map[string]cty.Value{"run_id": run})}
	}
	may, err := dbkit.MayDrop(drop("run-1"), "b", false, dbkit.Existing{})
	assert.False(t, may)
	assert.NoError(t, err)
	may, err = dbkit.MayDrop(drop("run-1"), "b", true, dbkit.Existing{})
	assert.False(t, may)
	assert.Equal(t, "name", argPath(t, err))
	may, err = dbkit.MayDrop(drop("run-1"), "b", true, mine)
	assert.True(t, may)
	assert.NoError(t, err)
	may, err = dbkit.MayDrop(drop("run-2"), "b", true, mine)
	assert.False(t, may, "another run's copy is not dropped")
	assert.Contains(t, err.Error(), "not this run's (run-2)")
	may, err = dbkit.MayDrop(drop(""), "b", true, mine)
	assert.True(t, may, "without a run id, any copy upshift made")
	assert.NoError(t, err)
	_, err = dbkit.MayDrop(drop(""), "b", true, dbkit.Existing{Marked: true, Foreign: "is owned by role \"x\""})
	assert.Equal(t, "name", argPath(t, err))
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
func (fakeDB) TryLock(context.Context, string, string) (*dbkit.Holder, error) {
	return nil, nil
}
func (fakeDB) Unlock(context.Context, string) (bool, error) { return false, nil }

func TestPluginDeclaresTheContract(t *testing.T) {
	p := dbkit.Plugin("x", "0.0.1", nil, fakeDB{})
	require.NoError(t, p.Validate())
	assert.Len(t, p.Actions, 8)
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

func TestAnUnfinishedCopyIsMadeAgainByItsRunOnly(t *testing.T) {
	unfinished := dbkit.Existing{Marked: true, RunID: "run-1", Unfinished: true}
	keep, err := dbkit.KeepExisting(copyReq(false, "run-1"), "b", unfinished)
	assert.False(t, keep, "the same run, resumed, copies again")
	assert.NoError(t, err)
	_, err = dbkit.KeepExisting(copyReq(false, "run-2"), "b", unfinished)
	require.Error(t, err, "another run's, perhaps still being made")
	assert.Contains(t, err.Error(), "is an unfinished copy begun by run run-1")
	_, err = dbkit.KeepExisting(copyReq(false, ""), "b", unfinished)
	require.Error(t, err)

	cr, err := dbkit.CheckCopy(copyReq(false, "run-1"), "b", true, unfinished, nil)
	require.NoError(t, err)
	assert.Equal(t, plugins.CheckNotApplied, cr.State)
	cr, _ = dbkit.CheckCopy(copyReq(false, "run-2"), "b", true, unfinished, nil)
	assert.Equal(t, plugins.CheckUnknown, cr.State)

	may, err := dbkit.MayDrop(&sdk.Request{Action: "drop", Args: cty.ObjectVal(map[string]cty.Value{"run_id": cty.StringVal("run-1")})}, "b", true, unfinished)
	assert.True(t, may, "rollback drops its own half-made copy")
	assert.NoError(t, err)
}
