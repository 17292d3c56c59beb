// Package dbkittest owns the checks every database plugin's tests run
// against its real server: the cluster lock (refused naming the holder,
// freed by unlock and by the death of the plugin process) and copy's
// adoption of its own run's work only. A vendor's test supplies providers
// configured on one database A, and plants what only it knows how to
// (markers, owners).
package dbkittest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
)

// Invoke calls action with args (missing optional arguments are null).
func Invoke(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	v := cty.EmptyObjectVal
	if len(args) > 0 {
		v = cty.ObjectVal(args)
	}
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: v})
}

// LockArgs are lock's arguments: the default name, holder, and wait ("" for
// none).
func LockArgs(holder, wait string) map[string]cty.Value {
	w := cty.NullVal(cty.String)
	if wait != "" {
		w = cty.StringVal(wait)
	}
	return map[string]cty.Value{"holder": cty.StringVal(holder), "wait": w}
}

// Lock checks the lock between two plugin instances on one database (two
// runs): the first takes it, twice; the second is refused at once and
// after a wait, with a message naming the first's holder and every string
// of wantInDetail (the vendor's view of the holding session); unlock frees
// it for the second; unlock of a lock not held is false.
func Lock(t *testing.T, first, second plugins.Provider, wantInDetail ...string) {
	t.Helper()
	const h1, h2 = "run 20261205T100211Z-3f2a1c9b0e3d of alice@host-1", "run 20261205T101500Z-9c1d2e3f4a5b of bob@host-2"
	r := Invoke(first, "lock", LockArgs(h1, ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, h1, r.Result.GetAttr("holder").AsString())
	assert.Equal(t, "upshift", r.Result.GetAttr("name").AsString())
	r = Invoke(first, "lock", LockArgs(h1, ""))
	require.False(t, r.Diagnostics.HasErrors(), "taken again by its holder: %v", r.Diagnostics.Err())

	began := time.Now()
	r = Invoke(second, "lock", LockArgs(h2, ""))
	require.True(t, r.Diagnostics.HasErrors(), "a second run is refused")
	assert.Less(t, time.Since(began), 5*time.Second, "at once")
	detail := r.Diagnostics[0].Detail
	t.Logf("refusal: %s", detail)
	assert.Contains(t, detail, "is held by "+h1)
	assert.Contains(t, detail, "If that run is dead, its plugin's connection is gone and the lock is free")
	for _, w := range wantInDetail {
		assert.Contains(t, detail, w)
	}

	began = time.Now()
	r = Invoke(second, "lock", LockArgs(h2, "700ms"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.GreaterOrEqual(t, time.Since(began), 700*time.Millisecond, "waited")
	assert.Contains(t, r.Diagnostics[0].Detail, "still after waiting 700ms")

	r = Invoke(second, "unlock", nil)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.False(t, r.Result.GetAttr("released").True(), "another's lock is left alone")
	r = Invoke(first, "unlock", nil)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("released").True())
	r = Invoke(first, "unlock", nil)
	assert.False(t, r.Result.GetAttr("released").True(), "unlock is idempotent")

	r = Invoke(second, "lock", LockArgs(h2, ""))
	require.False(t, r.Diagnostics.HasErrors(), "free after unlock: %v", r.Diagnostics.Err())
	r = Invoke(first, "lock", LockArgs(h1, ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics[0].Detail, "is held by "+h2)
	r = Invoke(second, "unlock", nil)
	assert.True(t, r.Result.GetAttr("released").True())
}

// Binary builds the plugin package pkg, launches it as upshift does
// (host.Launch, checksum pinned) and configures it with config. kill ends
// the process with SIGKILL and waits until it is gone.
func Binary(t *testing.T, pkg, name string, config cty.Value) (p plugins.Provider, kill func()) {
	t.Helper()
	path, sum, err := hosttest.Build(pkg, name, t.TempDir())
	require.NoError(t, err)
	prov, err := host.Launch(context.Background(), host.LaunchSpec{Name: name, Path: path, SHA256: sum, Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	inst := prov.(*host.Process)
	t.Cleanup(func() { _ = inst.Close() })
	d := inst.Configure(context.Background(), plugins.ConfigureRequest{Config: config})
	require.False(t, d.HasErrors(), "%v", d.Err())
	return inst, func() {
		require.NoError(t, syscall.Kill(inst.Pid(), syscall.SIGKILL))
		require.Eventually(t, inst.Exited, 10*time.Second, 10*time.Millisecond, "plugin process gone")
	}
}

// LockFreedWhenPluginDies: a lock held by a plugin process (dying, a real
// binary) is refused to other while that process lives and free once it
// has been killed, with no unlock. It returns how long after the kill
// other got it.
func LockFreedWhenPluginDies(t *testing.T, dying plugins.Provider, kill func(), other plugins.Provider) time.Duration {
	t.Helper()
	const h1 = "run 20261205T100211Z-deadbeef0001 of alice@host-1"
	r := Invoke(dying, "lock", LockArgs(h1, ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	r = Invoke(other, "lock", LockArgs("run 2 of bob@host-2", ""))
	require.True(t, r.Diagnostics.HasErrors(), "held while its plugin lives")
	assert.Contains(t, r.Diagnostics[0].Detail, "is held by "+h1)

	kill()
	began := time.Now()
	r = Invoke(other, "lock", LockArgs("run 2 of bob@host-2", "20s"))
	require.False(t, r.Diagnostics.HasErrors(), "freed by the plugin's death: %v", r.Diagnostics.Err())
	took := time.Since(began)
	r = Invoke(other, "unlock", nil)
	assert.True(t, r.Result.GetAttr("released").True())
	return took
}

// CopyArgs are copy's arguments.
func CopyArgs(to, runID string, replace bool) map[string]cty.Value {
	run := cty.NullVal(cty.String)
	if runID != "" {
		run = cty.StringVal(runID)
	}
	return map[string]cty.Value{"to": cty.StringVal(to), "run_id": run, "replace": cty.BoolVal(replace)}
}

// CopyAdoptsOnlyItsRun checks copy and drop by run id on p (configured on
// A) with a target to that does not exist yet: made by run r1, adopted by
// r1 (resumed) and its Check applied, refused to r2 (and its Check
// unknown), replaced for r2 with replace = true; drop refuses r1's id on
// r2's copy and drops it for r2. rows reads the row count of the copy
// whose dsn it is given; want is A's.
func CopyAdoptsOnlyItsRun(t *testing.T, p plugins.Provider, to string, rows func(dsn string) int, want int) {
	t.Helper()
	const r1, r2 = "20261205T100211Z-3f2a1c9b0e3d", "20261205T101500Z-9c1d2e3f4a5b"
	r := Invoke(p, "copy", CopyArgs(to, r1, false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	made := r.Result.GetAttr("method").AsString()
	assert.NotEqual(t, "kept", made)
	assert.Equal(t, want, rows(r.Result.GetAttr("dsn").AsString()))

	r = Invoke(p, "copy", CopyArgs(to, r1, false))
	require.False(t, r.Diagnostics.HasErrors(), "the same run, resumed: %v", r.Diagnostics.Err())
	assert.Equal(t, "kept", r.Result.GetAttr("method").AsString(), "adopted")
	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(CopyArgs(to, r1, false))})
	assert.Equal(t, plugins.CheckApplied, chk.State)

	r = Invoke(p, "copy", CopyArgs(to, r2, false))
	require.True(t, r.Diagnostics.HasErrors(), "another run does not adopt r1's copy")
	assert.Equal(t, "to", r.Diagnostics[0].Attribute)
	assert.Contains(t, r.Diagnostics[0].Detail, "is a finished copy made by run "+r1+", not by this run ("+r2+")")
	assert.Contains(t, r.Diagnostics[0].Detail, "replace = true")
	chk = p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(CopyArgs(to, r2, false))})
	assert.Equal(t, plugins.CheckUnknown, chk.State)
	r = Invoke(p, "copy", CopyArgs(to, "", false))
	require.True(t, r.Diagnostics.HasErrors(), "nor does a copy given no run id")
	assert.Contains(t, r.Diagnostics[0].Detail, "given no run_id")

	r = Invoke(p, "copy", CopyArgs(to, r2, true))
	require.False(t, r.Diagnostics.HasErrors(), "replace = true copies again: %v", r.Diagnostics.Err())
	assert.NotEqual(t, "kept", r.Result.GetAttr("method").AsString())
	assert.Equal(t, want, rows(r.Result.GetAttr("dsn").AsString()))
	r = Invoke(p, "copy", CopyArgs(to, r2, false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "kept", r.Result.GetAttr("method").AsString(), "now r2's")

	r = Invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(to), "run_id": cty.StringVal(r1)})
	require.True(t, r.Diagnostics.HasErrors(), "r1 does not drop r2's copy")
	assert.Equal(t, "name", r.Diagnostics[0].Attribute)
	r = Invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(to), "run_id": cty.StringVal(r2)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.True(t, r.Result.GetAttr("dropped").True())
}

// PlantedMarkerRefused: to exists with a marker that does not name run
// (planted by the vendor's test); copy for run is refused without
// replace, and drop for run refuses it too.
func PlantedMarkerRefused(t *testing.T, p plugins.Provider, to, run string) {
	t.Helper()
	r := Invoke(p, "copy", CopyArgs(to, run, false))
	require.True(t, r.Diagnostics.HasErrors(), "a marker that does not name this run is not adopted")
	assert.Equal(t, "to", r.Diagnostics[0].Attribute)
	t.Logf("refusal: %s", r.Diagnostics[0].Detail)
	r = Invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(to), "run_id": cty.StringVal(run)})
	require.True(t, r.Diagnostics.HasErrors(), "nor dropped")
}

// UnfinishedCopyMadeAgain: to holds the unfinished copy begun by run (the
// vendor's test plants it, as a crash mid-copy leaves it): copy for
// another run is refused, and copy for run, resumed, makes it again.
func UnfinishedCopyMadeAgain(t *testing.T, p plugins.Provider, to, run string, rows func(dsn string) int, want int) {
	t.Helper()
	r := Invoke(p, "copy", CopyArgs(to, "another-run", false))
	require.True(t, r.Diagnostics.HasErrors(), "another run's unfinished copy is not taken over")
	assert.Contains(t, r.Diagnostics[0].Detail, "is an unfinished copy begun by run "+run)
	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(CopyArgs(to, run, false))})
	assert.Equal(t, plugins.CheckNotApplied, chk.State, "not done for its own run")

	r = Invoke(p, "copy", CopyArgs(to, run, false))
	require.False(t, r.Diagnostics.HasErrors(), "the run that began it makes it again: %v", r.Diagnostics.Err())
	assert.NotEqual(t, "kept", r.Result.GetAttr("method").AsString())
	assert.Equal(t, want, rows(r.Result.GetAttr("dsn").AsString()))
	r = Invoke(p, "copy", CopyArgs(to, run, false))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "kept", r.Result.GetAttr("method").AsString(), "finished now")
}
