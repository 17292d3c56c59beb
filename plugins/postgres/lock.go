package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// The cluster lock is a session-level advisory lock in database A, taken
// with pg_try_advisory_lock(lockClass, key(name)) on a connection of its
// own that the plugin keeps open: PostgreSQL releases it when that session
// ends, so when the plugin process dies. Advisory locks belong to one
// database, so two clusters on one server do not meet. The session's
// application_name is the holder, which another run reads through pg_locks
// and pg_stat_activity.

// lockClass is the first key of upshift's advisory locks: "UPSH".
const lockClass = 0x55505348

// appNameMax is PostgreSQL's limit on application_name (NAMEDATALEN - 1).
const appNameMax = 63

func lockKey(name string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int32(h.Sum32() & 0x7fffffff)
}

// appName is holder cut to what application_name keeps, on a rune
// boundary.
func appName(holder string) string {
	if len(holder) <= appNameMax {
		return holder
	}
	cut := appNameMax
	for cut > 0 && !utf8.RuneStart(holder[cut]) {
		cut--
	}
	return holder[:cut]
}

func (d *pg) TryLock(ctx context.Context, name, holder string) (*dbkit.Holder, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	if d.locks == nil {
		d.locks = map[string]*pgx.Conn{}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if c := d.locks[name]; c != nil {
		var ours bool
		err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
			AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2 AND granted)`, lockClass, lockKey(name)).Scan(&ours)
		if err == nil && ours {
			return nil, nil
		}
		// The session holding it is gone (or lost it): take it again if free.
		_ = c.Close(context.Background())
		delete(d.locks, name)
	}
	c, err := d.connectAs(ctx, d.cfg.Database, appName(holder))
	if err != nil {
		return nil, err
	}
	// A server that ends idle sessions would end the lock with them.
	_, _ = c.Exec(ctx, "SET idle_session_timeout = 0")
	var got bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", lockClass, lockKey(name)).Scan(&got); err != nil {
		_ = c.Close(context.Background())
		return nil, fmt.Errorf("%s: %w", d.where(d.cfg.Database), err)
	}
	if got {
		d.locks[name] = c
		return nil, nil
	}
	defer c.Close(context.Background())
	return d.holder(ctx, c, name)
}

// holder reads who holds lock name, through c.
func (d *pg) holder(ctx context.Context, c *pgx.Conn, name string) (*dbkit.Holder, error) {
	h := &dbkit.Holder{Place: d.where(d.cfg.Database)}
	var (
		pid     int
		app     *string
		user    *string
		addr    *string
		started *time.Time
	)
	err := c.QueryRow(ctx, `SELECT l.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2 AND l.granted
		LIMIT 1`, lockClass, lockKey(name)).Scan(&pid, &app, &user, &addr, &started)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Freed between the two statements: the next try takes it.
		h.Session = "a session that has just released it"
		return h, nil
	case err != nil:
		return nil, fmt.Errorf("%s: reading who holds lock %q: %w", d.where(d.cfg.Database), name, err)
	}
	if app != nil {
		h.Holder = *app
	}
	h.Session = fmt.Sprintf("PostgreSQL backend pid %d", pid)
	if user != nil {
		h.Session += fmt.Sprintf(" of role %q", *user)
	}
	if addr != nil { // hidden from a role without pg_read_all_stats, and null for a local socket
		h.Session += " from " + *addr
	}
	if started != nil {
		h.Since = *started
	}
	h.Free = fmt.Sprintf("that run's session outlived it (a machine that vanished is noticed only after TCP keepalive): once you are sure the run is gone, end the session with SELECT pg_terminate_backend(%d) and run again", pid)
	return h, nil
}

func (d *pg) Unlock(ctx context.Context, name string) (bool, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	c := d.locks[name]
	if c == nil {
		return false, nil
	}
	delete(d.locks, name)
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var released bool
	err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1, $2)", lockClass, lockKey(name)).Scan(&released)
	// Ending the session releases it in any case.
	_ = c.Close(context.Background())
	if err != nil {
		// The session was gone already, and the lock with it.
		return false, nil
	}
	return released, nil
}
