package dbkit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// pfDB is a Database whose answers the test sets; every action that
// changes something counts, and preflight must call none.
type pfDB struct {
	checkErr error
	copyRes  plugins.CheckResponse
	copyErr  error
	copyArgs cty.Value
	changes  int
}

func (d *pfDB) Configure(context.Context, plugins.ConfigureRequest) error { return nil }
func (d *pfDB) Backup(context.Context, *sdk.Request) (cty.Value, error) {
	d.changes++
	return cty.NilVal, errors.New("backup")
}
func (d *pfDB) Copy(context.Context, *sdk.Request) (cty.Value, error) {
	d.changes++
	return cty.NilVal, errors.New("copy")
}
func (d *pfDB) CheckCopy(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	d.copyArgs = r.Args
	return d.copyRes, d.copyErr
}
func (d *pfDB) ReadOnly(context.Context, *sdk.Request) (cty.Value, error) {
	d.changes++
	return cty.NilVal, errors.New("read_only")
}
func (d *pfDB) Drop(context.Context, *sdk.Request) (cty.Value, error) {
	d.changes++
	return cty.NilVal, errors.New("drop")
}
func (d *pfDB) Check(context.Context, *sdk.Request) (cty.Value, error) {
	if d.checkErr != nil {
		return cty.NilVal, d.checkErr
	}
	return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("app"), "version": cty.StringVal("16.4")}), nil
}
func (d *pfDB) TryLock(context.Context, string, string) (*dbkit.Holder, error) {
	d.changes++
	return nil, errors.New("lock")
}
func (d *pfDB) Unlock(context.Context, string) (bool, error) { return false, nil }

// sizedDB can also tell A's size and the user's missing privileges.
type sizedDB struct {
	pfDB
	size     int64
	sizeErr  error
	missing  []string
	privErr  error
	sizeAsks int
}

func (d *sizedDB) Size(context.Context) (int64, error) {
	d.sizeAsks++
	return d.size, d.sizeErr
}
func (d *sizedDB) MissingPrivileges(context.Context) ([]string, error) { return d.missing, d.privErr }

func pfInvoke(t *testing.T, d dbkit.Database, to, runID, backupDir string) plugins.InvokeResponse {
	t.Helper()
	p := sdktest.Provider(t, dbkit.Plugin("pf", "0.0.1", nil, d))
	s := func(v string) cty.Value {
		if v == "" {
			return cty.NullVal(cty.String)
		}
		return cty.StringVal(v)
	}
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: "preflight", Args: cty.ObjectVal(map[string]cty.Value{
		"to": s(to), "run_id": s(runID), "backup_dir": s(backupDir),
	})})
}

func TestPreflightResult(t *testing.T) {
	// A database that cannot tell its size: -1, and only the folder's
	// writability is checked.
	d := &pfDB{copyRes: plugins.CheckResponse{State: plugins.CheckNotApplied}}
	r := pfInvoke(t, d, "app_b", "r1", filepath.Join(t.TempDir(), "new", "folder"))
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, r.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("app"), "size_bytes": cty.NumberIntVal(-1)})), "%#v", r.Result)
	assert.True(t, d.copyArgs.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"to": cty.StringVal("app_b"), "run_id": cty.StringVal("r1"), "replace": cty.NullVal(cty.Bool),
	})), "copy's Check is asked about B for this run, without replace: %#v", d.copyArgs)

	s := &sizedDB{size: 12345}
	s.copyRes = plugins.CheckResponse{State: plugins.CheckApplied}
	r = pfInvoke(t, s, "app_b", "r1", t.TempDir())
	require.NoError(t, r.Diagnostics.Err(), "B is this run's finished copy: fine")
	assert.True(t, r.Result.RawEquals(cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("app"), "size_bytes": cty.NumberIntVal(12345)})), "%#v", r.Result)

	// No to: copy's Check is not asked.
	s = &sizedDB{size: 1}
	r = pfInvoke(t, s, "", "", "")
	require.NoError(t, r.Diagnostics.Err())
	assert.True(t, s.copyArgs.IsNull(), "no to, no copy check")
	assert.Zero(t, d.changes+s.changes, "preflight changed nothing")
}

func TestPreflightEveryProblemAtOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backups")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	d := &sizedDB{
		missing: []string{"role \"app\" may not create databases, which copy does: ALTER ROLE app CREATEDB", "role \"app\" does not own app"},
		sizeErr: errors.New("permission denied for function pg_database_size"),
	}
	d.copyRes = plugins.CheckResponse{State: plugins.CheckUnknown, Detail: `database "app_b" exists and is a finished copy made by run r0, not a finished copy of this run`}
	r := pfInvoke(t, d, "app_b", "r1", filepath.Join(file, "today"))
	require.True(t, r.Diagnostics.HasErrors())
	require.Len(t, r.Diagnostics, 1)
	assert.Equal(t, "preflight failed", r.Diagnostics[0].Summary)
	assert.Equal(t, "5 problem(s):\n"+
		"  - role \"app\" may not create databases, which copy does: ALTER ROLE app CREATEDB\n"+
		"  - role \"app\" does not own app\n"+
		"  - copy target: database \"app_b\" exists and is a finished copy made by run r0, not a finished copy of this run; drop it, or give copy replace = true if it may go\n"+
		"  - cannot tell the size of app: permission denied for function pg_database_size\n"+
		"  - backup folder "+filepath.Join(file, "today")+": "+file+" is not a folder",
		r.Diagnostics[0].Detail)
	assert.Zero(t, d.changes, "preflight changed nothing")

	// Errors of the checks themselves are problems too, with the rest.
	d = &sizedDB{privErr: errors.New("connection reset"), size: 1}
	d.copyErr = sdk.ArgError("to", `"app-b" is not a database name upshift creates`)
	r = pfInvoke(t, d, "app-b", "r1", "")
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "2 problem(s):\n"+
		"  - cannot tell the connecting user's privileges: connection reset\n"+
		"  - copy target app-b: to: \"app-b\" is not a database name upshift creates",
		r.Diagnostics[0].Detail)
}

func TestPreflightBackupRoom(t *testing.T) {
	dir := t.TempDir()
	// More than any disk has: the folder that would hold it is named, with
	// what it has and what A needs.
	d := &sizedDB{size: 1 << 60}
	r := pfInvoke(t, d, "", "", filepath.Join(dir, "a", "b"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Regexp(t, `^1 problem\(s\):\n  - backup folder `+filepath.Join(dir, "a", "b")+`: \d+(\.\d)? [KMGTPE]?i?B free on `+dir+`, app needs about 1\.0 EiB$`, r.Diagnostics[0].Detail)
	assert.NoDirExists(t, filepath.Join(dir, "a"), "preflight made no folder")

	d = &sizedDB{size: 1 << 20}
	r = pfInvoke(t, d, "", "", filepath.Join(dir, "a", "b"))
	require.NoError(t, r.Diagnostics.Err(), "a MiB fits")
}

func TestPreflightDatabaseDoesNotAnswer(t *testing.T) {
	d := &sizedDB{}
	d.checkErr = errors.New(`connecting to database "app" on 127.0.0.1:5432: connection refused`)
	r := pfInvoke(t, d, "app_b", "r1", t.TempDir())
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, `the database does not answer: connecting to database "app" on 127.0.0.1:5432: connection refused`, r.Diagnostics[0].Detail)
	assert.Zero(t, d.sizeAsks, "nothing else is asked of a database that does not answer")
}
