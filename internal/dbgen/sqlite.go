package dbgen

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sort"

	_ "modernc.org/sqlite" // driver "sqlite"
)

var liteSchema = []string{
	"CREATE TABLE customers (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL, country TEXT NOT NULL, created_at TEXT NOT NULL)",
	"CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER NOT NULL, amount REAL NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, note TEXT)",
	"CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, at TEXT NOT NULL)",
}

// liteFill inserts rows ?1..?2; ?3 is the number of customers. SQLite has
// no md5: payloads are hex of a multiplicative hash, as wide as md5's.
var liteFill = map[string]string{
	"customers": "WITH RECURSIVE s(g) AS (SELECT ?1 UNION ALL SELECT g + 1 FROM s WHERE g < ?2) INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com', char(65 + g % 26) || char(65 + (g / 26) % 26), datetime('2020-01-01', '+' || g || ' minutes') FROM s WHERE ?3 > 0",
	"orders":    "WITH RECURSIVE s(g) AS (SELECT ?1 UNION ALL SELECT g + 1 FROM s WHERE g < ?2) INSERT INTO orders SELECT g, 1 + g % ?3, (g % 100000) / 100.0, CASE g % 5 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' WHEN 3 THEN 'done' ELSE 'refunded' END, datetime('2020-01-01', '+' || (g * 10) || ' seconds'), CASE WHEN g % 3 = 0 THEN NULL ELSE printf('%016x%016x', g * 2654435761, g * 40503) END FROM s",
	"events":    "WITH RECURSIVE s(g) AS (SELECT ?1 UNION ALL SELECT g + 1 FROM s WHERE g < ?2) INSERT INTO events SELECT g, 1 + g % max(?3 * 8, 1), CASE g % 6 WHEN 0 THEN 'created' WHEN 1 THEN 'paid' WHEN 2 THEN 'packed' WHEN 3 THEN 'sent' WHEN 4 THEN 'delivered' ELSE 'viewed' END, printf('%016x%016x%016x%016x', g * 2654435761, g * 40503, g * 97, g * 1103515245), datetime('2020-01-01', '+' || (g * 5) || ' seconds') FROM s",
}

var liteIndexes = []string{
	"CREATE INDEX customers_email_idx ON customers (email)",
	"CREATE INDEX orders_customer_idx ON orders (customer_id)",
	"CREATE INDEX orders_status_created_idx ON orders (status, created_at)",
	"CREATE INDEX events_order_idx ON events (order_id)",
}

// SQLite makes the database file path (which must not exist) with n rows,
// in WAL mode as platformd opens it, and checkpoints it so that the file
// alone holds every row (a cp of it is then a complete copy).
func SQLite(ctx context.Context, path string, n Size) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	customers := max(n.Tables()[0].Rows, 1)
	stmts := append([]string{}, liteSchema...)
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("dbgen: %s: %w", s, err)
		}
	}
	for _, t := range n.Tables() {
		for lo := int64(1); lo <= t.Rows; lo += chunk {
			hi := min(lo+chunk-1, t.Rows)
			if _, err := db.ExecContext(ctx, liteFill[t.Name], lo, hi, customers); err != nil {
				return fmt.Errorf("dbgen: filling %s: %w", t.Name, err)
			}
		}
	}
	for _, s := range append(liteIndexes, "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)") {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("dbgen: %s: %w", s, err)
		}
	}
	return nil
}

// SQLiteSummary is what a copy of the database file db has open must
// have in common with it.
func SQLiteSummary(ctx context.Context, db *sql.DB) (Summary, error) {
	s := Summary{Rows: map[string]int64{}, Sums: map[string]string{}, Sequences: map[string]int64{}}
	tables, err := column(ctx, db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")
	if err != nil {
		return s, err
	}
	for _, t := range tables {
		n, sum, err := liteSum(ctx, db, t)
		if err != nil {
			return s, fmt.Errorf("%s: %w", t, err)
		}
		s.Rows[t], s.Sums[t] = n, sum
	}
	if s.Indexes, err = column(ctx, db, "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY 1"); err != nil {
		return s, err
	}
	rows, err := db.QueryContext(ctx, "SELECT name, seq FROM sqlite_sequence")
	if err == nil {
		defer rows.Close()
		for rows.Next() {
			var name string
			var v int64
			if err := rows.Scan(&name, &v); err != nil {
				return s, err
			}
			s.Sequences[name] = v
		}
	}
	sort.Strings(s.Indexes)
	return s, nil
}

func column(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// liteSum counts table t's rows and hashes them in rowid order, each
// value with its type (SQLite has no hash function of its own).
func liteSum(ctx context.Context, db *sql.DB, t string) (int64, string, error) {
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+t+`" ORDER BY rowid`)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, "", err
		}
		for _, v := range vals {
			fmt.Fprintf(h, "%T:%v|", v, v)
		}
		n++
	}
	return n, hex.EncodeToString(h.Sum(nil)), rows.Err()
}
