package platform

import (
	"context"
	"fmt"
	"time"
)

// processLoop is the processing-node role: every ProcessInterval it does a
// round of work in the database, and skips it while read-only (the database
// of a read-only node must take no writes at all).
func (s *Server) processLoop(ctx context.Context) {
	t := time.NewTicker(s.ProcessInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		did, err := s.processOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("processing round failed", "err", err)
		case !did:
			s.log.Debug("processing skipped: read-only")
		}
	}
}

// processOnce does one round: count the items into stats and, on version 2,
// fill missing checksums (a bounded batch) and count the round in jobs.
// It reports false when it skipped the round for read-only mode.
func (s *Server) processOnce(ctx context.Context) (bool, error) {
	s.writeMu.RLock()
	defer s.writeMu.RUnlock()
	if s.readOnly.Load() {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, requestDBTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return true, err
	}
	defer func() { _ = tx.Rollback() }()
	v, err := schemaVersion(ctx, tx, s.d)
	if err != nil {
		return true, err
	}
	if err := schemaMismatch(v, s.cfg.Version); err != nil {
		return true, err
	}
	now := time.Now().UnixMilli()
	if _, err := tx.ExecContext(ctx, s.d.q("UPDATE stats SET value = value + 1, updated_at = ? WHERE name = ?"), now, statTicks); err != nil {
		return true, fmt.Errorf("count round: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.d.q("UPDATE stats SET value = (SELECT COUNT(*) FROM items), updated_at = ? WHERE name = ?"), now, statItemsCount); err != nil {
		return true, fmt.Errorf("count items: %w", err)
	}
	if s.cfg.Version >= Version2 {
		n, err := fillChecksums(ctx, tx, s.d, 100)
		if err != nil {
			return true, fmt.Errorf("fill checksums: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.d.q("UPDATE jobs SET runs = runs + 1, items_done = items_done + ?, updated_at = ? WHERE name = ?"), n, now, jobChecksum); err != nil {
			return true, fmt.Errorf("count job: %w", err)
		}
	}
	return true, tx.Commit()
}
