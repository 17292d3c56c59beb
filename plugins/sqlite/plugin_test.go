package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// newDB makes database A with WAL on, as platformd does, and a writer that
// keeps inserting until the test ends (bounded: at most 5,000 rows, 10 s).
func newDB(t *testing.T) (string, func() int) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sqlite")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec("create table items(id integer primary key, v text)")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5000 && ctx.Err() == nil; i++ {
			if _, err := db.Exec("insert into items(v) values (?)", fmt.Sprint(i)); err == nil {
				mu.Lock()
				written++
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Let some rows land first.
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return written > 50 }, 5*time.Second, 5*time.Millisecond)
	return path, func() int { mu.Lock(); defer mu.Unlock(); return written }
}

func configured(t *testing.T, path string) plugins.Provider {
	p := sdktest.Provider(t, newPlugin())
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(path)})}).HasErrors())
	return p
}

func invoke(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
}

func rows(t *testing.T, path string) int {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow("select count(*) from items").Scan(&n))
	return n
}

func TestCopyWhileWriting(t *testing.T) {
	a, written := newDB(t)
	p := configured(t, a)
	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	resp := invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	assert.Equal(t, b, resp.Result.GetAttr("dsn").AsString())
	assert.Equal(t, "file-copy", resp.Result.GetAttr("method").AsString())
	n := rows(t, b)
	assert.Greater(t, n, 0)
	assert.LessOrEqual(t, n, written(), "a snapshot, never rows that were not written")

	// Idempotent: a finished copy is kept, not made again.
	before, _ := os.Stat(b)
	resp = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)})
	require.False(t, resp.Diagnostics.HasErrors())
	after, _ := os.Stat(b)
	assert.Equal(t, before.ModTime(), after.ModTime())
	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)})})
	assert.Equal(t, plugins.CheckApplied, chk.State)

	// A file that is not our copy is not overwritten.
	other := filepath.Join(filepath.Dir(a), "other.sqlite")
	require.NoError(t, os.WriteFile(other, []byte("precious"), 0o644))
	resp = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(other), "replace": cty.NullVal(cty.Bool)})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "to", resp.Diagnostics[0].Attribute)
	got, _ := os.ReadFile(other)
	assert.Equal(t, "precious", string(got))
}

func TestBackupDropAndCheck(t *testing.T) {
	a, _ := newDB(t)
	p := configured(t, a)
	bak := filepath.Join(t.TempDir(), "backup.sqlite")
	resp := invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(bak)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	assert.Greater(t, rows(t, bak), 0)
	size, _ := resp.Result.GetAttr("bytes").AsBigFloat().Int64()
	st, _ := os.Stat(bak)
	assert.Equal(t, st.Size(), size)

	resp = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(a)})
	require.True(t, resp.Diagnostics.HasErrors(), "database A is never dropped")
	_, err := os.Stat(a)
	require.NoError(t, err)

	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	require.False(t, invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)}).Diagnostics.HasErrors())
	resp = invoke(p, "drop", map[string]cty.Value{"name": cty.StringVal(b)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	assert.True(t, resp.Result.GetAttr("dropped").True())
	_, err = os.Stat(b)
	assert.True(t, os.IsNotExist(err))

	resp = invoke(p, "check", map[string]cty.Value{})
	require.False(t, resp.Diagnostics.HasErrors())
	assert.Regexp(t, `^3\.\d+`, resp.Result.GetAttr("version").AsString())
}

func TestMissingDatabaseIsOneLineNamingIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.sqlite")
	p := configured(t, missing)
	resp := invoke(p, "check", map[string]cty.Value{})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics.Err().Error(), missing)
	_, err := os.Stat(missing)
	assert.True(t, os.IsNotExist(err), "checking does not create the file")
}
