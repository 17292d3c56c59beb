package dbgen

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
)

var myTables = []string{
	"CREATE TABLE customers (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(128) NOT NULL, country CHAR(2) NOT NULL, created_at DATETIME NOT NULL) ENGINE=InnoDB",
	"CREATE TABLE orders (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, customer_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL, status VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL, note VARCHAR(64) NULL) ENGINE=InnoDB",
	"CREATE TABLE events (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, payload VARCHAR(255) NOT NULL, at DATETIME NOT NULL) ENGINE=InnoDB",
}

// myFill inserts rows ? to ? of a table from the SEQUENCE engine; the
// third ? is the number of customers.
var myFill = map[string]string{
	"customers": "INSERT INTO customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), CONCAT(CHAR(65 + seq % 26), CHAR(65 + (seq DIV 26) % 26)), '2020-01-01' + INTERVAL seq MINUTE FROM seq_1_to_{N} WHERE seq BETWEEN ? AND ? AND ? > 0",
	"orders":    "INSERT INTO orders SELECT seq, 1 + seq % ?, (seq % 100000) / 100.0, ELT(1 + seq % 5, 'new','paid','shipped','done','refunded'), '2020-01-01' + INTERVAL seq * 10 SECOND, IF(seq % 3 = 0, NULL, MD5(seq)) FROM seq_1_to_{N} WHERE seq BETWEEN ? AND ?",
	"events":    "INSERT INTO events SELECT seq, 1 + seq % GREATEST(? * 8, 1), ELT(1 + seq % 6, 'created','paid','packed','sent','delivered','viewed'), CONCAT(MD5(seq), MD5(seq * 7)), '2020-01-01' + INTERVAL seq * 5 SECOND FROM seq_1_to_{N} WHERE seq BETWEEN ? AND ?",
}

var myIndexes = []string{
	"ALTER TABLE customers ADD INDEX customers_email_idx (email)",
	"ALTER TABLE orders ADD INDEX orders_customer_idx (customer_id), ADD INDEX orders_status_created_idx (status, created_at)",
	"ALTER TABLE events ADD INDEX events_order_idx (order_id)",
}

// MariaDB fills the empty database dsn names (a go-sql-driver DSN) with n
// rows: tables with their primary keys, rows from the SEQUENCE engine in
// chunks (a connection per table), then the secondary indexes (built
// sorted, faster than row by row).
func MariaDB(ctx context.Context, dsn string, n Size) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, s := range myTables {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("dbgen: %s: %w", s, err)
		}
	}
	customers := max(n.Tables()[0].Rows, 1)
	var fills []func(context.Context) error
	for _, t := range n.Tables() {
		fills = append(fills, func(ctx context.Context) error {
			q := strings.ReplaceAll(myFill[t.Name], "{N}", strconv.FormatInt(max(t.Rows, 1), 10))
			for lo := int64(1); lo <= t.Rows; lo += chunk / 4 {
				hi := min(lo+chunk/4-1, t.Rows)
				args := []any{customers, lo, hi}
				if t.Name == "customers" {
					args = []any{lo, hi, customers}
				}
				if _, err := db.ExecContext(ctx, q, args...); err != nil {
					return fmt.Errorf("dbgen: filling %s: %w", t.Name, err)
				}
			}
			return nil
		})
	}
	if err := parallel(ctx, 3, fills); err != nil {
		return err
	}
	var idx []func(context.Context) error
	for _, s := range append(myIndexes, "ANALYZE TABLE customers, orders, events") {
		idx = append(idx, func(ctx context.Context) error {
			if _, err := db.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("dbgen: %s: %w", s, err)
			}
			return nil
		})
	}
	return parallel(ctx, 2, idx)
}

// MariaDBSummary is what a copy of database name on db must have in
// common with it.
func MariaDBSummary(ctx context.Context, db *sql.DB, name string) (Summary, error) {
	s := Summary{Rows: map[string]int64{}, Sums: map[string]string{}, Sequences: map[string]int64{}}
	rows, err := db.QueryContext(ctx, "SELECT table_name, COALESCE(auto_increment, 0) FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'", name)
	if err != nil {
		return s, err
	}
	var tables []string
	for rows.Next() {
		var t string
		var ai int64
		if err := rows.Scan(&t, &ai); err != nil {
			rows.Close()
			return s, err
		}
		tables = append(tables, t)
		s.Sequences[t] = ai
	}
	rows.Close()
	for _, t := range tables {
		q := "`" + name + "`.`" + t + "`"
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+q).Scan(&n); err != nil {
			return s, err
		}
		// Every column's value (QUOTE tells NULL from 'NULL'), hashed per
		// row and folded: a changed, missing or extra row changes it.
		// (CHECKSUM TABLE would not do: it sums stored records, and a row
		// changed by an instant ADD COLUMN sums otherwise than its copy.)
		var cols []string
		crows, err := db.QueryContext(ctx, "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", name, t)
		if err != nil {
			return s, err
		}
		for crows.Next() {
			var c string
			if err := crows.Scan(&c); err != nil {
				crows.Close()
				return s, err
			}
			cols = append(cols, "QUOTE(`"+c+"`)")
		}
		crows.Close()
		var sum sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT BIT_XOR(CAST(CONV(LEFT(MD5(CONCAT_WS('|', "+strings.Join(cols, ", ")+")), 16), 16, 10) AS UNSIGNED)) FROM "+q).Scan(&sum); err != nil {
			return s, err
		}
		s.Rows[t], s.Sums[t] = n, sum.String
	}
	rows, err = db.QueryContext(ctx, "SELECT DISTINCT table_name, index_name FROM information_schema.statistics WHERE table_schema = ? AND index_name <> 'PRIMARY'", name)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var t, i string
		if err := rows.Scan(&t, &i); err != nil {
			return s, err
		}
		s.Indexes = append(s.Indexes, strings.Join([]string{t, i}, "."))
	}
	sort.Strings(s.Indexes)
	return s, rows.Err()
}
