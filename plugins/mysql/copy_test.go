package main

import (
	"context"
	"database/sql"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/dbgen"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

func fastProgress(t *testing.T) {
	old := dbkit.ProgressEvery
	dbkit.ProgressEvery = 5 * time.Millisecond
	t.Cleanup(func() { dbkit.ProgressEvery = old })
}

// generatedA is newA filled by dbgen (n rows over three more tables,
// secondary indexes, auto increments), plus what a copy must also carry:
// a view, a generated column, a routine and a trigger.
func generatedA(t *testing.T, n dbgen.Size) (string, *sql.DB) {
	a, admin := newA(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, dbgen.MariaDB(ctx, serverDSN(t)+a, n))
	// Unqualified names, as an application writes them: a dump carries
	// them as they are, and B's objects then refer to B.
	inA, err := sql.Open("mysql", serverDSN(t)+a)
	require.NoError(t, err)
	defer inA.Close()
	inA.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE VIEW paid AS SELECT id, amount FROM orders WHERE status = 'paid'",
		"ALTER TABLE orders ADD COLUMN cents BIGINT AS (amount * 100) VIRTUAL",
		"CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT)",
		"CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id)",
	} {
		_, err := inA.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	return a, admin
}

func summary(t *testing.T, admin *sql.DB, db string) dbgen.Summary {
	s, err := dbgen.MariaDBSummary(context.Background(), admin, db)
	require.NoError(t, err)
	delete(s.Rows, markerTable)
	delete(s.Sums, markerTable)
	delete(s.Sequences, markerTable)
	return s
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (p *lines) add(l string) { p.mu.Lock(); p.l = append(p.l, l); p.mu.Unlock() }
func (p *lines) matching(re *regexp.Regexp) (out []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.l {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

var meterLine = regexp.MustCompile(`^copy: \S+ rows of \S+ rows \(\d+%\), \S+ rows/s`)

func TestParallelCopyIsCompleteAndExact(t *testing.T) {
	fastProgress(t)
	a, admin := generatedA(t, 20_000)
	want := summary(t, admin, a)
	require.Equal(t, int64(8000), want.Rows["orders"])
	p := provider(t, serverDSN(t)+a)
	var got lines
	r := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(a + "_b"), "replace": cty.NullVal(cty.Bool)}), Progress: got.add})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "parallel", r.Result.GetAttr("method").AsString())
	b := a + "_b"
	require.NotContains(t, want.Rows, "paid", "a view is no table")
	assert.Equal(t, want, summary(t, admin, b), "rows, checksums, indexes and auto increments as in A")
	assert.NotEmpty(t, got.matching(meterLine), "progress in rows with total, percent and rate: %q", got.l)

	// The trigger came after the rows (audit is as in A, not one row per
	// copied order), and it works in B; so do the view and the routine.
	var audit, paid, twice int
	require.NoError(t, admin.QueryRow("SELECT count(*) FROM `"+b+"`.audit").Scan(&audit))
	assert.Zero(t, audit)
	_, err := admin.Exec("INSERT INTO `" + b + "`.orders (customer_id, amount, status, created_at) VALUES (1, 1, 'paid', NOW())")
	require.NoError(t, err)
	require.NoError(t, admin.QueryRow("SELECT count(*) FROM `"+b+"`.audit").Scan(&audit))
	assert.Equal(t, 1, audit)
	require.NoError(t, admin.QueryRow("SELECT count(*), `"+b+"`.twice(21) FROM `"+b+"`.paid").Scan(&paid, &twice))
	assert.Equal(t, 1601, paid, "the view reads B's orders")
	assert.Equal(t, 42, twice)
}

func TestCancelledCopyLeavesNoB(t *testing.T) {
	fastProgress(t)
	a, admin := generatedA(t, 20_000)
	p := provider(t, serverDSN(t)+a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	r := p.Invoke(ctx, plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(a + "_b"), "replace": cty.NullVal(cty.Bool), "run_id": cty.StringVal("run-1")}),
		Progress: func(l string) {
			if meterLine.MatchString(l) {
				once.Do(cancel)
			}
		}})
	require.True(t, r.Diagnostics.HasErrors(), "a cancelled copy fails")
	// The host's call returns at once; the plugin drops B as it unwinds.
	assert.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", a+"_b").Scan(&n))
		return n == 0
	}, 20*time.Second, 20*time.Millisecond, "no half B is left behind, claimed by the run or not")
	// A's tables are not left locked: a write goes through.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	_, err := admin.ExecContext(wctx, "INSERT INTO `"+a+"`.customers (name, email, country, created_at) VALUES ('x', 'x', 'XX', NOW())")
	assert.NoError(t, err)
}

func TestBackupReportsProgress(t *testing.T) {
	fastProgress(t)
	a, _ := generatedA(t, 20_000)
	p := provider(t, serverDSN(t)+a)
	var got lines
	to := t.TempDir() + "/a.sql"
	r := p.Invoke(context.Background(), plugins.InvokeRequest{Action: "backup", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(to)}), Progress: got.add})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.NotEmpty(t, got.matching(regexp.MustCompile(`^backup: \S+ \S*B, \S+ \S*B/s$`)), "bytes written and rate: %q", got.l)
}
