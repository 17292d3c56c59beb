package main

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/dbgen"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// fastProgress makes the copy meters report every few milliseconds.
func fastProgress(t *testing.T) {
	old := dbkit.ProgressEvery
	dbkit.ProgressEvery = 5 * time.Millisecond
	t.Cleanup(func() { dbkit.ProgressEvery = old })
}

// generatedA is newA filled by dbgen with n rows over three tables, with
// secondary indexes and sequences.
func generatedA(t *testing.T, n dbgen.Size) (name, dsn string, admin *pgx.Conn) {
	name, dsn, admin = newA(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, dbgen.Postgres(ctx, dsn, n))
	return name, dsn, admin
}

func summary(t *testing.T, dsn string) dbgen.Summary {
	c, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	s, err := dbgen.PostgresSummary(context.Background(), c)
	require.NoError(t, err)
	closeAndWait(t, c)
	return s
}

// progressLines collects an invoke's progress lines.
type progressLines struct {
	mu    sync.Mutex
	lines []string
}

func (p *progressLines) add(l string) { p.mu.Lock(); p.lines = append(p.lines, l); p.mu.Unlock() }
func (p *progressLines) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

var meterLine = regexp.MustCompile(`^(dump|restore): \S+ \S+ of \S+ \S+ \(\d+%\), \S+ \S+/s`)

func TestCopyIsCompleteAndExactBothWays(t *testing.T) {
	fastProgress(t)
	a, dsn, _ := generatedA(t, 20_000)
	want := summary(t, dsn)
	require.Equal(t, int64(8000), want.Rows["orders"])
	require.Len(t, want.Indexes, 8, "newA's items, three primary keys and four secondary indexes")
	require.Equal(t, int64(8000), want.Sequences["orders_id_seq"])
	p := provider(t, dsn)

	// Nothing else on A: a template copy.
	r := invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(a + "_b"), "replace": cty.NullVal(cty.Bool)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "template", r.Result.GetAttr("method").AsString())
	assert.Equal(t, want, summary(t, r.Result.GetAttr("dsn").AsString()))

	// A node's session on A: parallel dump and restore, with progress.
	hold, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer hold.Close(context.Background())
	var lines progressLines
	r = p.Invoke(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(a + "_b"), "replace": cty.True}), Progress: lines.add})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "dump-restore", r.Result.GetAttr("method").AsString())
	assert.Equal(t, want, summary(t, r.Result.GetAttr("dsn").AsString()), "rows, checksums, indexes and sequences as in A")
	var metered []string
	for _, l := range lines.all() {
		if meterLine.MatchString(l) {
			metered = append(metered, l)
		}
	}
	assert.NotEmpty(t, metered, "progress with done, total, percent and rate: %q", lines.all())
}

func TestFailedCopyLeavesNoB(t *testing.T) {
	fastProgress(t)
	a, dsn, admin := generatedA(t, 20_000)
	p := provider(t, dsn)
	hold, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer hold.Close(context.Background())

	// The step is cancelled (a timeout, an operator's stop) once the
	// restore is under way.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	r := p.Invoke(ctx, plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(a + "_b"), "replace": cty.NullVal(cty.Bool), "run_id": cty.StringVal("run-1")}),
		Progress: func(l string) {
			if regexp.MustCompile(`^restore: `).MatchString(l) {
				once.Do(cancel)
			}
		}})
	require.True(t, r.Diagnostics.HasErrors(), "a cancelled copy fails")
	// The host's call returns at once; the plugin drops B as it unwinds.
	assert.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", a+"_b").Scan(&n))
		return n == 0
	}, 10*time.Second, 20*time.Millisecond, "no half B is left behind, claimed by the run or not")
}

func TestBackupReportsProgress(t *testing.T) {
	fastProgress(t)
	_, dsn, _ := generatedA(t, 20_000)
	p := provider(t, dsn)
	var lines progressLines
	to := t.TempDir() + "/a.backup"
	r := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "backup", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(to)}), Progress: lines.add})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	var metered int
	for _, l := range lines.all() {
		if regexp.MustCompile(`^backup: \S+ \S*B, \S+ \S*B/s$`).MatchString(l) {
			metered++
		}
	}
	assert.NotZero(t, metered, "bytes written and rate: %q", lines.all())
}
