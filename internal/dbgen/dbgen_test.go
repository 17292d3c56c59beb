package dbgen

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"1GB": RowsPerGB, "500MB": RowsPerGB / 2, "10M": 10_000_000, "250k": 250_000, "20000": 20_000, " 2gb ": 2 * RowsPerGB} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "big", "-1GB", "10"} {
		_, err := ParseSize(bad)
		assert.Error(t, err, bad)
	}
}

func TestTablesSumToSize(t *testing.T) {
	for _, n := range []Size{100, 20_000, 10_000_001} {
		var sum int64
		for _, tb := range n.Tables() {
			sum += tb.Rows
		}
		assert.Equal(t, int64(n), sum)
	}
}

func TestSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sqlite")
	require.NoError(t, SQLite(context.Background(), path, 2000))
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	s, err := SQLiteSummary(context.Background(), db)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"customers": 100, "orders": 800, "events": 1100}, s.Rows)
	assert.Equal(t, []string{"customers_email_idx", "events_order_idx", "orders_customer_idx", "orders_status_created_idx"}, s.Indexes)
	assert.Equal(t, int64(800), s.Sequences["orders"])
	for _, tb := range []string{"customers", "orders", "events"} {
		assert.Len(t, s.Sums[tb], 64, tb)
	}
	// One changed value changes its table's sum, and only that one.
	rw, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	defer rw.Close()
	_, err = rw.Exec("UPDATE orders SET note = 'x' WHERE id = 400")
	require.NoError(t, err)
	s2, err := SQLiteSummary(context.Background(), db)
	require.NoError(t, err)
	assert.NotEqual(t, s.Sums["orders"], s2.Sums["orders"])
	assert.Equal(t, s.Sums["events"], s2.Sums["events"])
}
