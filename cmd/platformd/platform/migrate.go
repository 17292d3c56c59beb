package platform

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// MigrateResult says what Migrate changed.
type MigrateResult struct {
	From         int  // database schema version before
	To           int  // target version (the config's version)
	Database     bool // the database schema was migrated
	DataDir      bool // the data folder was migrated
	ItemsUpdated int  // items whose checksum was filled in
}

// Migrate brings the database named in cfg and the data folder cfg.DataDir
// to version cfg.Version. It refuses an empty database, a database or data
// folder newer than the target (ErrVersionMismatch), and a run with nothing
// to do (ErrAlreadyMigrated). A database already at the target whose data
// folder is not yet is finished, so an interrupted run can be run again.
func Migrate(ctx context.Context, cfg *Config) (*MigrateResult, error) {
	st, db, err := migrationState(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	d := dialect(cfg.DBDriver)
	sv, dv, target := st.Database, st.DataDir, st.Target
	res := &MigrateResult{From: sv, To: target}
	if st.Done() {
		return nil, newKindError(ErrAlreadyMigrated, "already migrated to version %d", target)
	}

	if sv < target {
		// Only one step exists today: 1 -> 2.
		n, err := migrateDB1to2(ctx, db, d)
		if err != nil {
			return nil, fmt.Errorf("migrate database to schema 2: %w", err)
		}
		res.Database, res.ItemsUpdated = true, n
	}
	if dv < target {
		if err := migrateDataDir(cfg); err != nil {
			return res, fmt.Errorf("migrate data folder: %w", err)
		}
		res.DataDir = true
	}
	return res, nil
}

// MigrateState is where a node's database and data folder stand against
// the version its config names.
type MigrateState struct {
	Database int // schema version of the database (0: no platformd schema)
	DataDir  int // version of the data folder (0: never initialised)
	Target   int // the config's version
}

// Done reports whether both are at the target: migrate has nothing to do.
func (s MigrateState) Done() bool { return s.Database == s.Target && s.DataDir == s.Target }

// CheckMigrated says whether the config's database and data folder are
// migrated to the config's version, changing nothing: nil when they are,
// ErrNotMigrated when migrate would change something, ErrVersionMismatch
// for what migrate refuses (an empty database, a newer version), and any
// other error when it cannot tell (CheckExitCode).
func CheckMigrated(ctx context.Context, cfg *Config) (MigrateState, error) {
	st, db, err := migrationState(ctx, cfg)
	if err != nil {
		return st, err
	}
	_ = db.Close()
	if !st.Done() {
		return st, newKindError(ErrNotMigrated, "not migrated to version %d: database at schema %d, data folder at version %d", st.Target, st.Database, st.DataDir)
	}
	return st, nil
}

// migrationState reads the schema and data folder versions and refuses
// what migrate refuses; the database stays open for Migrate on success.
func migrationState(ctx context.Context, cfg *Config) (MigrateState, *sql.DB, error) {
	if err := cfg.Validate(); err != nil {
		return MigrateState{}, nil, err
	}
	target := cfg.Version
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return MigrateState{}, nil, err
	}
	fail := func(err error) (MigrateState, *sql.DB, error) {
		_ = db.Close()
		return MigrateState{}, nil, err
	}
	sv, err := schemaVersion(ctx, db, dialect(cfg.DBDriver))
	if err != nil {
		return fail(err)
	}
	dv, err := DataVersion(cfg.DataDir)
	if err != nil {
		return fail(err)
	}
	switch {
	case sv == 0:
		return fail(newKindError(ErrVersionMismatch, "database has no platformd schema (wrong or empty database?): start a version-1 node on it first"))
	case sv > LatestVersion:
		return fail(newKindError(ErrVersionMismatch, "database is at unknown schema %d (this binary knows 1 and 2)", sv))
	case sv > target:
		return fail(newKindError(ErrVersionMismatch, "database schema %d is newer than target version %d", sv, target))
	case dv > target:
		return fail(newKindError(ErrVersionMismatch, "data folder %s is at version %d, newer than target version %d", cfg.DataDir, dv, target))
	}
	return MigrateState{Database: sv, DataDir: dv, Target: target}, db, nil
}

// migrateDB1to2 adds items.checksum (filled for every existing row) and the
// jobs table, then sets schema_info to 2, in one transaction where the
// engine's DDL is transactional. On MySQL the DDL commits on its own, so each
// DDL step checks what exists first and a failed run can be run again.
func migrateDB1to2(ctx context.Context, db *sql.DB, d dialect) (int, error) {
	// Probe outside the transaction: a failed statement aborts a PostgreSQL
	// transaction.
	hasChecksum := columnExists(ctx, db, "items", "checksum")

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	var ddl querier = tx
	if !d.transactionalDDL() {
		ddl = db
	}
	if !hasChecksum {
		if _, err := ddl.ExecContext(ctx, "ALTER TABLE items ADD COLUMN checksum VARCHAR(64)"); err != nil {
			return 0, err
		}
	}
	if _, err := ddl.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS jobs (
		name VARCHAR(64) NOT NULL PRIMARY KEY,
		runs BIGINT NOT NULL,
		items_done BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	)`); err != nil {
		return 0, err
	}
	if err := insertIfMissing(ctx, tx, d, "jobs", jobChecksum, time.Now().UnixMilli()); err != nil {
		return 0, err
	}
	n, err := fillChecksums(ctx, tx, d, -1)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE schema_info SET version = 2"); err != nil {
		return 0, err
	}
	return n, tx.Commit()
}

// fillChecksums sets checksum on items that have none, in pages; max < 0
// means all of them. Rows are read a page at a time and closed before the
// updates, since a MySQL connection cannot do both at once.
func fillChecksums(ctx context.Context, tx *sql.Tx, d dialect, max int) (int, error) {
	const page = 500
	done := 0
	last := ""
	for max < 0 || done < max {
		limit := page
		if max >= 0 && max-done < limit {
			limit = max - done
		}
		rows, err := tx.QueryContext(ctx, d.q("SELECT id, value FROM items WHERE checksum IS NULL AND id > ? ORDER BY id LIMIT ?"), last, limit)
		if err != nil {
			return done, err
		}
		type kv struct{ id, value string }
		var batch []kv
		for rows.Next() {
			var r kv
			if err := rows.Scan(&r.id, &r.value); err != nil {
				_ = rows.Close()
				return done, err
			}
			batch = append(batch, r)
		}
		if err := rows.Close(); err != nil {
			return done, err
		}
		if err := rows.Err(); err != nil {
			return done, err
		}
		for _, r := range batch {
			if _, err := tx.ExecContext(ctx, d.q("UPDATE items SET checksum = ? WHERE id = ?"), checksum(r.value), r.id); err != nil {
				return done, err
			}
		}
		done += len(batch)
		if len(batch) < limit {
			break
		}
		last = batch[len(batch)-1].id
	}
	return done, nil
}

func columnExists(ctx context.Context, db *sql.DB, table, column string) bool {
	rows, err := db.QueryContext(ctx, "SELECT "+column+" FROM "+table+" WHERE 1 = 0")
	if err != nil {
		return false
	}
	_ = rows.Close()
	return true
}
