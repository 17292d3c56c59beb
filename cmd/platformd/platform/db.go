package platform

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteParams make one SQLite file safe to share between three node
// processes: WAL lets readers run beside a writer, busy_timeout makes a
// writer wait for the lock instead of failing, immediate transactions take
// the write lock up front (a deferred one can fail with SQLITE_BUSY when it
// upgrades), and synchronous=FULL keeps an acknowledged write across a crash.
const sqliteParams = "_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"

// OpenDB opens the database named by cfg ("db.driver", "db.dsn") and checks
// that it answers. The caller closes it.
func OpenDB(ctx context.Context, cfg *Config) (*sql.DB, error) {
	name, dsn := sqlDriver(cfg.DBDriver, cfg.DBDSN)
	if name == "" {
		return nil, newKindError(ErrConfig, "db.driver %q: want sqlite, postgres or mysql", cfg.DBDriver)
	}
	db, err := sql.Open(name, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", cfg.DBDriver, err)
	}
	db.SetConnMaxIdleTime(time.Minute)
	db.SetMaxOpenConns(16)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", cfg.DBDriver, err)
	}
	return db, nil
}

// sqlDriver maps a config driver to the database/sql driver name and DSN.
func sqlDriver(driver, dsn string) (string, string) {
	switch driver {
	case DriverSQLite:
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return "sqlite", dsn + sep + sqliteParams
	case DriverPostgres:
		return "pgx", dsn
	case DriverMySQL:
		return "mysql", dsn
	}
	return "", ""
}

// dialect hides the few differences between the engines: placeholders and
// catalog queries. Everything else is written once in portable SQL.
type dialect string

// q rewrites "?" placeholders to "$1", "$2"... for PostgreSQL. The queries of
// this package never hold a literal "?".
func (d dialect) q(query string) string {
	if d != DriverPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (d dialect) tableExistsQuery() string {
	switch d {
	case DriverSQLite:
		return "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	case DriverPostgres:
		return "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
	default:
		return "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
	}
}

// transactionalDDL is false where CREATE/ALTER commit the open transaction.
func (d dialect) transactionalDDL() bool { return d != DriverMySQL }

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SchemaVersion reports the schema version of db: 0 for a database without
// platformd tables, otherwise the value in schema_info.
func SchemaVersion(ctx context.Context, db *sql.DB, driver string) (int, error) {
	return schemaVersion(ctx, db, dialect(driver))
}

func schemaVersion(ctx context.Context, q querier, d dialect) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, d.tableExistsQuery(), "schema_info").Scan(&n); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_info").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// schema1 is the version-1 schema. id is VARCHAR(255) rather than TEXT
// because MySQL cannot index a TEXT column without a prefix length.
var schema1 = []string{
	`CREATE TABLE IF NOT EXISTS items (
		id VARCHAR(255) NOT NULL PRIMARY KEY,
		value TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS stats (
		name VARCHAR(64) NOT NULL PRIMARY KEY,
		value BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)`,
}

// Rows of the stats table, kept by the processing loop of either version.
const (
	statTicks      = "ticks"
	statItemsCount = "items_count"
)

// jobChecksum is the jobs row (schema 2) kept by a version-2 processing node.
const jobChecksum = "checksum"

// initSchema1 creates the version-1 schema in an empty database. Three nodes
// may start at once on the same database, so every statement tolerates
// another node having done it first, and the whole is retried on a conflict.
func initSchema1(ctx context.Context, db *sql.DB, d dialect) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = initSchema1Once(ctx, db, d); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100*(attempt+1)) * time.Millisecond):
		}
	}
	return fmt.Errorf("initialise schema 1: %w", err)
}

func initSchema1Once(ctx context.Context, db *sql.DB, d dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var ddl querier = tx
	if !d.transactionalDDL() {
		ddl = db
	}
	for _, stmt := range schema1 {
		if _, err := ddl.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	now := time.Now().UnixMilli()
	for _, name := range []string{statTicks, statItemsCount} {
		if err := insertIfMissing(ctx, tx, d, "stats", name, now); err != nil {
			return err
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_info").Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_info (version) VALUES (1)"); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// insertIfMissing adds a zeroed counter row to stats or jobs.
func insertIfMissing(ctx context.Context, tx *sql.Tx, d dialect, table, name string, now int64) error {
	var n int
	if err := tx.QueryRowContext(ctx, d.q("SELECT COUNT(*) FROM "+table+" WHERE name = ?"), name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	var stmt string
	switch table {
	case "stats":
		stmt = "INSERT INTO stats (name, value, updated_at) VALUES (?, 0, ?)"
	case "jobs":
		stmt = "INSERT INTO jobs (name, runs, items_done, updated_at) VALUES (?, 0, 0, ?)"
	default:
		return fmt.Errorf("insertIfMissing: unknown table %q", table)
	}
	_, err := tx.ExecContext(ctx, d.q(stmt), name, now)
	return err
}

// checksum is the value of items.checksum (schema 2) for an item's value.
func checksum(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

// isDuplicateKey reports a primary-key violation on any of the engines.
func isDuplicateKey(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	return false
}
