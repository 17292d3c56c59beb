package dbgen

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
)

var pgSchema = []string{
	`CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL, country char(2) NOT NULL, created_at timestamptz NOT NULL)`,
	`CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, amount numeric(12,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL, note text)`,
	`CREATE TABLE events (id bigserial PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL, payload text NOT NULL, at timestamptz NOT NULL)`,
}

// pgFill inserts rows lo..hi of a table; $1 and $2 are lo and hi, $3 the
// number of customers.
var pgFill = map[string]string{
	"customers": `INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com', chr((65 + g % 26)::int) || chr((65 + (g / 26) % 26)::int), timestamptz '2020-01-01' + g * interval '1 minute' FROM generate_series($1::bigint, $2::bigint) g WHERE $3::bigint > 0`,
	"orders":    `INSERT INTO orders SELECT g, 1 + g % $3::bigint, (g % 100000) / 100.0, (ARRAY['new','paid','shipped','done','refunded'])[1 + g % 5], timestamptz '2020-01-01' + g * interval '10 seconds', CASE WHEN g % 3 = 0 THEN NULL ELSE md5(g::text) END FROM generate_series($1::bigint, $2::bigint) g`,
	"events":    `INSERT INTO events SELECT g, 1 + g % greatest($3::bigint * 8, 1), (ARRAY['created','paid','packed','sent','delivered','viewed'])[1 + g % 6], md5(g::text) || md5((g * 7)::text), timestamptz '2020-01-01' + g * interval '5 seconds' FROM generate_series($1::bigint, $2::bigint) g`,
}

var pgIndexes = []string{
	`CREATE INDEX customers_email_idx ON customers (email)`,
	`CREATE INDEX orders_customer_idx ON orders (customer_id)`,
	`CREATE INDEX orders_status_created_idx ON orders (status, created_at)`,
	`CREATE INDEX events_order_idx ON events (order_id)`,
}

// chunk is how many rows one INSERT makes: big enough to be fast, small
// enough that no statement holds minutes of work.
const chunk = 1_000_000

// Postgres fills the empty database dsn names with n rows: tables, then
// rows (a connection per table), then indexes, sequences moved past the
// ids, and VACUUM ANALYZE so that the first reader of A does not pay for
// setting hint bits (a benchmark would time that instead of the copy).
func Postgres(ctx context.Context, dsn string, n Size) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for _, s := range pgSchema {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("dbgen: %s: %w", s, err)
		}
	}
	customers := n.Tables()[0].Rows
	var fills []func(context.Context) error
	for _, t := range n.Tables() {
		fills = append(fills, func(gctx context.Context) error {
			tc, err := pgx.Connect(gctx, dsn)
			if err != nil {
				return err
			}
			defer tc.Close(context.Background())
			for lo := int64(1); lo <= t.Rows; lo += chunk {
				hi := min(lo+chunk-1, t.Rows)
				if _, err := tc.Exec(gctx, pgFill[t.Name], lo, hi, max(customers, 1)); err != nil {
					return fmt.Errorf("dbgen: filling %s: %w", t.Name, err)
				}
			}
			_, err = tc.Exec(gctx, fmt.Sprintf(`SELECT setval('%s_id_seq', %d)`, t.Name, max(t.Rows, 1)))
			return err
		})
	}
	if err := parallel(ctx, 3, fills); err != nil {
		return err
	}
	var after []func(context.Context) error
	for _, s := range append(pgIndexes, "VACUUM ANALYZE customers", "VACUUM ANALYZE orders", "VACUUM ANALYZE events") {
		after = append(after, func(gctx context.Context) error {
			tc, err := pgx.Connect(gctx, dsn)
			if err != nil {
				return err
			}
			defer tc.Close(context.Background())
			if _, err := tc.Exec(gctx, s); err != nil {
				return fmt.Errorf("dbgen: %s: %w", s, err)
			}
			return nil
		})
	}
	return parallel(ctx, 2, after)
}

// PostgresSummary is what a copy of the database c is connected to must
// have in common with it.
func PostgresSummary(ctx context.Context, c *pgx.Conn) (Summary, error) {
	s := Summary{Rows: map[string]int64{}, Sums: map[string]string{}, Sequences: map[string]int64{}}
	rows, err := c.Query(ctx, `SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 1`)
	if err != nil {
		return s, err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return s, err
	}
	for _, t := range tables {
		var n int64
		var sum *string
		id := pgx.Identifier{t}.Sanitize()
		// Rows in key order, each as its text form: any changed value,
		// missing or extra row changes the digest.
		if err := c.QueryRow(ctx, `SELECT count(*), md5(string_agg(md5(x::text), '' ORDER BY x.id)) FROM `+id+` x`).Scan(&n, &sum); err != nil {
			return s, fmt.Errorf("%s: %w", t, err)
		}
		s.Rows[t] = n
		if sum != nil {
			s.Sums[t] = *sum
		}
	}
	rows, err = c.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`)
	if err != nil {
		return s, err
	}
	if s.Indexes, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return s, err
	}
	rows, err = c.Query(ctx, `SELECT sequencename, coalesce(last_value, 0) FROM pg_sequences WHERE schemaname = 'public'`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return s, err
		}
		s.Sequences[name] = v
	}
	sort.Strings(s.Indexes)
	return s, rows.Err()
}
