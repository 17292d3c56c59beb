package dbkit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit/dbkittest"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// memLocks is one server's locks, shared by several plugins (each a
// memDB, as each run has its own plugin process).
type memLocks struct {
	mu     sync.Mutex
	owners map[string]*memDB
	holder map[string]string
}

type memDB struct {
	fakeDB
	locks *memLocks
}

func (m *memDB) TryLock(_ context.Context, name, holder string) (*dbkit.Holder, error) {
	m.locks.mu.Lock()
	defer m.locks.mu.Unlock()
	if o := m.locks.owners[name]; o != nil && o != m {
		return &dbkit.Holder{Place: "memory", Holder: m.locks.holder[name], Since: time.Date(2026, 12, 5, 10, 2, 11, 0, time.UTC), Session: "session 7", Free: "end session 7"}, nil
	}
	m.locks.owners[name], m.locks.holder[name] = m, holder
	return nil, nil
}

func (m *memDB) Unlock(_ context.Context, name string) (bool, error) {
	m.locks.mu.Lock()
	defer m.locks.mu.Unlock()
	if m.locks.owners[name] != m {
		return false, nil
	}
	delete(m.locks.owners, name)
	return true, nil
}

var (
	lockArgs = dbkittest.LockArgs
	call     = dbkittest.Invoke
)

func TestLockIsOneRunAtATimeAndNamesTheHolder(t *testing.T) {
	server := &memLocks{owners: map[string]*memDB{}, holder: map[string]string{}}
	first := sdktest.Provider(t, dbkit.Plugin("mem", "0.0.1", nil, &memDB{locks: server}))
	second := sdktest.Provider(t, dbkit.Plugin("mem", "0.0.1", nil, &memDB{locks: server}))

	r := call(first, "lock", lockArgs("run 3f2a of alice@host", ""))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "upshift", r.Result.GetAttr("name").AsString())
	assert.Equal(t, "run 3f2a of alice@host", r.Result.GetAttr("holder").AsString())
	r = call(first, "lock", lockArgs("run 3f2a of alice@host", ""))
	require.False(t, r.Diagnostics.HasErrors(), "idempotent for its holder")

	began := time.Now()
	r = call(second, "lock", lockArgs("run 9c1d of bob@other", ""))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Less(t, time.Since(began), time.Second, "refused at once")
	msg := r.Diagnostics[0].Detail
	assert.Equal(t, "lock failed", r.Diagnostics[0].Summary)
	assert.Contains(t, msg, `lock "upshift" on memory is held by run 3f2a of alice@host (session 7, since 2026-12-05 10:02:11 UTC)`)
	assert.Contains(t, msg, "If that run is dead, its plugin's connection is gone and the lock is free")
	assert.Contains(t, msg, "If it is not free, end session 7")

	began = time.Now()
	r = call(second, "lock", lockArgs("run 9c1d of bob@other", "600ms"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.GreaterOrEqual(t, time.Since(began), 600*time.Millisecond, "waited")
	assert.Contains(t, r.Diagnostics[0].Detail, "still after waiting 600ms")

	// Released while the second waits: it gets the lock.
	go func() {
		time.Sleep(300 * time.Millisecond)
		call(first, "unlock", nil)
	}()
	var lines []string
	var mu sync.Mutex
	r = second.Invoke(context.Background(), plugins.InvokeRequest{Action: "lock", Args: cty.ObjectVal(lockArgs("run 9c1d of bob@other", "10s")),
		Progress: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() }})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	mu.Lock()
	assert.Equal(t, []string{`lock "upshift" is held by run 3f2a of alice@host; waiting up to 10s`}, lines)
	mu.Unlock()

	r = call(first, "unlock", nil)
	require.False(t, r.Diagnostics.HasErrors())
	assert.False(t, r.Result.GetAttr("released").True(), "another's lock is left alone")
	r = call(second, "unlock", nil)
	assert.True(t, r.Result.GetAttr("released").True())
	r = call(second, "unlock", nil)
	assert.False(t, r.Result.GetAttr("released").True(), "idempotent")
}

func TestLockArguments(t *testing.T) {
	p := sdktest.Provider(t, dbkit.Plugin("mem", "0.0.1", nil, &memDB{locks: &memLocks{owners: map[string]*memDB{}, holder: map[string]string{}}}))
	for attr, args := range map[string]map[string]cty.Value{
		"holder": lockArgs("  ", ""),
		"wait":   lockArgs("run 1", "soon"),
		"name":   {"name": cty.StringVal("a-b"), "holder": cty.StringVal("run 1"), "wait": cty.NullVal(cty.String)},
	} {
		r := call(p, "lock", args)
		require.True(t, r.Diagnostics.HasErrors(), attr)
		assert.Equal(t, attr, r.Diagnostics[0].Attribute)
	}
	r := call(p, "lock", lockArgs("run 1\nof x", ""))
	assert.Equal(t, "holder", r.Diagnostics[0].Attribute, "one line")
}

func TestIsHeld(t *testing.T) {
	err := &dbkit.HeldError{Name: "upshift", Held: dbkit.Holder{Place: "p"}}
	assert.True(t, dbkit.IsHeld(err))
	assert.Contains(t, err.Error(), "held by a run whose holder could not be read")
}
