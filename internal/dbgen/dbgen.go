// Package dbgen fills a database A of a chosen size for the database
// plugins' benchmarks and tests: three tables of an order system
// (customers, orders, events) with primary keys, secondary indexes and
// sequences, the same on PostgreSQL, MariaDB and SQLite, made inside the
// server (generate_series, the SEQUENCE engine, a recursive CTE) so that
// 10 million rows take minutes, not hours. Nothing it makes is committed.
// It also computes what a copy must preserve (per-table row counts and
// checksums, index and sequence names) so tests can compare A and B.
package dbgen

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// SizeEnv chooses the size of the benchmarks' database A: "1GB" (about 6.3
// million rows, 1 GB on PostgreSQL's disk), "10M" (10 million rows, about
// 1.6 GB there), or unset for Default.
const SizeEnv = "UPSHIFT_BENCH_DB_SIZE"

// Default is the size benchmarks use when SizeEnv is unset: small enough
// for CI, big enough that every step of a copy runs.
const Default = 20_000

// RowsPerGB is how many rows make about 1 GB on disk with this schema: on
// PostgreSQL, tables and indexes (10 million rows measured 1,591 MiB).
// MariaDB and SQLite store the same rows in somewhat less.
const RowsPerGB = 6_300_000

// Size is the number of rows A gets, over all its tables.
type Size int64

// SizeFromEnv reads SizeEnv: Default when unset; an error when it is not
// a size ParseSize reads.
func SizeFromEnv() (Size, error) {
	v := os.Getenv(SizeEnv)
	if v == "" {
		return Default, nil
	}
	return ParseSize(v)
}

// ParseSize reads "1GB", "500MB" (bytes, through RowsPerGB), "10M",
// "250k" or "20000" (rows).
func ParseSize(v string) (Size, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	mult := float64(1)
	switch {
	case strings.HasSuffix(s, "GB"):
		s, mult = strings.TrimSuffix(s, "GB"), RowsPerGB
	case strings.HasSuffix(s, "MB"):
		s, mult = strings.TrimSuffix(s, "MB"), RowsPerGB/1000.0
	case strings.HasSuffix(s, "M"):
		s, mult = strings.TrimSuffix(s, "M"), 1e6
	case strings.HasSuffix(s, "K"):
		s, mult = strings.TrimSuffix(s, "K"), 1e3
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%s=%q: not a size (1GB, 500MB, 10M rows, 250k rows)", SizeEnv, v)
	}
	n := Size(f * mult)
	if n < 100 {
		return 0, fmt.Errorf("%s=%q: at least 100 rows", SizeEnv, v)
	}
	return n, nil
}

// Big reports whether n is beyond Default, i.e. asked for explicitly.
func (n Size) Big() bool { return n > Default }

func (n Size) String() string {
	if n >= 1_000_000 {
		return fmt.Sprintf("%.3gM rows", float64(n)/1e6)
	}
	return fmt.Sprintf("%d rows", int64(n))
}

// Table is one generated table and its row count for a Size.
type Table struct {
	Name string
	Rows int64
}

// Tables are the generated tables, their rows summing to n: customers
// 5%, orders 40%, events the rest.
func (n Size) Tables() []Table {
	c := int64(n) / 20
	o := int64(n) * 2 / 5
	return []Table{{"customers", c}, {"orders", o}, {"events", int64(n) - c - o}}
}

// Indexes are the secondary indexes every engine gets, by table.
var Indexes = map[string][]string{
	"customers": {"customers_email_idx"},
	"orders":    {"orders_customer_idx", "orders_status_created_idx"},
	"events":    {"events_order_idx"},
}

// Summary is what a complete, exact copy has in common with A.
type Summary struct {
	// Rows and Sums are per table: the row count and a checksum of every
	// row's content in key order.
	Rows map[string]int64
	Sums map[string]string
	// Indexes are the secondary index names; Sequences the next value of
	// each table's id sequence or auto increment, by table.
	Indexes   []string
	Sequences map[string]int64
}

// parallel runs fns, at most limit at a time, and returns the first
// error; the others' context is cancelled then.
func parallel(ctx context.Context, limit int, fns []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, f := range fns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}
