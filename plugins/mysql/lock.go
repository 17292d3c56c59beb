package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// The cluster lock is a user-level lock, GET_LOCK, taken on a connection of
// its own that the plugin keeps open: the server releases it when that
// connection ends, so when the plugin process dies. User-level locks are
// server-wide, so the lock's name includes database A's. While holding it
// the plugin writes the holder in the table lockTable of A (one row per
// lock, with the holding connection's id); another run reads it back only
// when that id is the one IS_USED_LOCK names, so a row a crashed run left
// is never taken for the holder. Dumps leave the table out.
const lockTable = "_upshift_lock"

// held is a lock this process holds: its connection, and the pool that
// connection came from (closing the pool ends the connection; closing a
// *sql.Conn alone would only return it, still holding the lock, to the
// pool).
type held struct {
	pool *sql.DB
	conn *sql.Conn
}

func (h *held) close() {
	_ = h.conn.Close()
	_ = h.pool.Close()
}

// serverLockName is lock name's name on the server: at most 64 characters.
func (d *my) serverLockName(name string) string {
	n := "upshift:" + d.cfg.DBName + ":" + name
	if len(n) <= 64 {
		return n
	}
	sum := sha256.Sum256([]byte(d.cfg.DBName + ":" + name))
	return "upshift:" + hex.EncodeToString(sum[:])[:48]
}

func (d *my) TryLock(ctx context.Context, name, holder string) (*dbkit.Holder, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	if d.locks == nil {
		d.locks = map[string]*held{}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	server := d.serverLockName(name)
	if h := d.locks[name]; h != nil {
		var ours sql.NullBool
		if err := h.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", server).Scan(&ours); err == nil && ours.Bool {
			return nil, nil
		}
		// Its connection is gone (or lost it): take it again if free.
		h.close()
		delete(d.locks, name)
	}
	pool, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(1)
	conn, err := pool.Conn(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to %s: %w", d.where(d.cfg.DBName), err)
	}
	h := &held{pool: pool, conn: conn}
	// The server ends a connection idle for wait_timeout (8 hours by
	// default), and the lock with it: an upgrade may take longer.
	_, _ = conn.ExecContext(ctx, "SET SESSION wait_timeout = 31536000")
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", server).Scan(&got); err != nil {
		h.close()
		return nil, fmt.Errorf("%s: GET_LOCK: %w", d.where(d.cfg.DBName), err)
	}
	if got.Valid && got.Int64 == 1 {
		d.locks[name] = h
		d.writeHolder(ctx, conn, name, holder)
		return nil, nil
	}
	defer h.close()
	return d.holder(ctx, conn, name, server)
}

// writeHolder records the holder beside the lock. Best effort: without the
// row another run still learns the holding connection from the
// processlist.
func (d *my) writeHolder(ctx context.Context, conn *sql.Conn, name, holder string) {
	table := "`" + d.cfg.DBName + "`." + lockTable
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS " + table + " (name VARCHAR(64) NOT NULL PRIMARY KEY, holder VARCHAR(256) NOT NULL, connection_id BIGINT UNSIGNED NOT NULL, since DATETIME NOT NULL) ENGINE=InnoDB",
		"REPLACE INTO " + table + " VALUES (?, ?, CONNECTION_ID(), UTC_TIMESTAMP())",
	} {
		var args []any
		if q[0] == 'R' {
			args = []any{name, holder}
		}
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return
		}
	}
}

// holder reads who holds lock name (server is its name on the server),
// through conn.
func (d *my) holder(ctx context.Context, conn *sql.Conn, name, server string) (*dbkit.Holder, error) {
	h := &dbkit.Holder{Place: d.where(d.cfg.DBName)}
	var id sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", server).Scan(&id); err != nil {
		return nil, fmt.Errorf("%s: reading who holds lock %q: %w", d.where(d.cfg.DBName), name, err)
	}
	if !id.Valid {
		h.Session = "a connection that has just released it"
		return h, nil
	}
	var who, since sql.NullString
	if conn.QueryRowContext(ctx, "SELECT holder, DATE_FORMAT(since, '%Y-%m-%dT%H:%i:%sZ') FROM `"+d.cfg.DBName+"`."+lockTable+" WHERE name = ? AND connection_id = ?", name, id.Int64).Scan(&who, &since) == nil {
		h.Holder = who.String
		if t, err := time.Parse(time.RFC3339, since.String); err == nil {
			h.Since = t
		}
	}
	var user, host sql.NullString
	if conn.QueryRowContext(ctx, "SELECT user, host FROM information_schema.processlist WHERE id = ?", id.Int64).Scan(&user, &host) == nil {
		h.Session = fmt.Sprintf("connection %d of %s@%s", id.Int64, user.String, host.String)
	} else {
		h.Session = fmt.Sprintf("connection %d (not in the processlist this user may see)", id.Int64)
	}
	h.Free = fmt.Sprintf("that run's connection outlived it (a machine that vanished is noticed only after TCP keepalive): once you are sure the run is gone, end it with KILL %d and run again", id.Int64)
	return h, nil
}

func (d *my) Unlock(ctx context.Context, name string) (bool, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	h := d.locks[name]
	if h == nil {
		return false, nil
	}
	delete(d.locks, name)
	defer h.close() // ending the connection releases it in any case
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	_, _ = h.conn.ExecContext(ctx, "DELETE FROM `"+d.cfg.DBName+"`."+lockTable+" WHERE name = ? AND connection_id = CONNECTION_ID()", name)
	var released sql.NullInt64
	if err := h.conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", d.serverLockName(name)).Scan(&released); err != nil {
		return false, nil // the connection was gone, and the lock with it
	}
	return released.Valid && released.Int64 == 1, nil
}
