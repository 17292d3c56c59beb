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
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	target := cfg.Version
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	d := dialect(cfg.DBDriver)

	sv, err := schemaVersion(ctx, db, d)
	if err != nil {
		return nil, err
	}
	dv, err := DataVersion(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	res := &MigrateResult{From: sv, To: target}
	switch {
	case sv == 0:
		return nil, newKindError(ErrVersionMismatch, "database has no platformd schema (wrong or empty database?): start a version-1 node on it first")
	case sv > LatestVersion:
		return nil, newKindError(ErrVersionMismatch, "database is at unknown schema %d (this binary knows 1 and 2)", sv)
	case sv > target:
		return nil, newKindError(ErrVersionMismatch, "database schema %d is newer than target version %d", sv, target)
	case dv > target:
		return nil, newKindError(ErrVersionMismatch, "data folder %s is at version %d, newer than target version %d", cfg.DataDir, dv, target)
	case sv == target && dv == target:
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
