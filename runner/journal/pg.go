// State in PostgreSQL: one database holds the journals, history and run
// locks of many clusters (and playbooks), keyed by cluster identity, so
// that runs from laptops and CI share one truth.
//
// Tables (created on first use, migrated by upshift_schema_version):
//
//	upshift_meta      name -> value: the sealing key's check value
//	upshift_clusters  id (Cluster.ID) -> name, identity (cluster.json's)
//	upshift_runs      (cluster_id, run_id): header (the Run without steps
//	                  and samples, as JSON), status, times, current (at
//	                  most one per cluster: the run a resume continues;
//	                  the others are its history)
//	upshift_steps     (cluster_id, run_id, address) -> the step's JSON,
//	                  its result sealed as in the files
//	upshift_samples   (cluster_id, run_id, n) -> a guard's sample
//	upshift_locks     cluster_id -> the run lock's holder and fencing token
//
// Records are kept as text, not jsonb, so that what a resume reads back is
// byte for byte what was written.
//
// The run lock is a session-level advisory lock (pg_try_advisory_lock on a
// key taken from the cluster's ID) held on a connection of its own for the
// whole run: a holder that dies frees it with its session. Its owner row
// says who holds it, and carries a random token that every journal write
// checks in its transaction, so that a runner which lost its lock (the
// server restarted, another runner took it) writes nothing more.

package journal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSchemaVersion is the schema this upshift writes; a database at a newer
// version is refused rather than misread.
const pgSchemaVersion = 1

// pgMigrations[i] takes the schema from version i to i+1.
var pgMigrations = []string{
	`CREATE TABLE upshift_meta (
		name  text PRIMARY KEY,
		value text NOT NULL
	);
	CREATE TABLE upshift_clusters (
		id            text PRIMARY KEY,
		name          text NOT NULL DEFAULT '',
		identity      text NOT NULL,
		registered_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE upshift_runs (
		cluster_id text NOT NULL REFERENCES upshift_clusters (id),
		run_id     text NOT NULL,
		current    boolean NOT NULL,
		status     text NOT NULL,
		started_at timestamptz NOT NULL,
		updated_at timestamptz NOT NULL,
		header     text NOT NULL,
		PRIMARY KEY (cluster_id, run_id)
	);
	CREATE UNIQUE INDEX upshift_runs_current ON upshift_runs (cluster_id) WHERE current;
	CREATE TABLE upshift_steps (
		cluster_id text NOT NULL,
		run_id     text NOT NULL,
		address    text NOT NULL,
		step       text NOT NULL,
		PRIMARY KEY (cluster_id, run_id, address),
		FOREIGN KEY (cluster_id, run_id) REFERENCES upshift_runs ON DELETE CASCADE
	);
	CREATE TABLE upshift_samples (
		cluster_id text NOT NULL,
		run_id     text NOT NULL,
		n          bigint NOT NULL,
		sample     text NOT NULL,
		PRIMARY KEY (cluster_id, run_id, n),
		FOREIGN KEY (cluster_id, run_id) REFERENCES upshift_runs ON DELETE CASCADE
	);
	CREATE TABLE upshift_locks (
		cluster_id text PRIMARY KEY,
		token      text NOT NULL,
		owner      text NOT NULL,
		since      timestamptz NOT NULL
	);`,
}

// pgMigrateLock serialises schema migrations of several first users
// (pg_advisory_xact_lock key: "upshift" in ASCII).
const pgMigrateLock = 0x7570736869667400

// pgLockSpace is the first key of a cluster's run lock (the two-int form
// of pg_advisory_lock), so that upshift's locks do not meet an
// application's single-key locks in the same database.
const pgLockSpace = 0x75707368 // "upsh"

// DefaultPGRetry is how long a write is retried while the server cannot
// be reached before the run stops.
const DefaultPGRetry = 60 * time.Second

// PGConfig says where and how to keep state in PostgreSQL.
type PGConfig struct {
	// DSN is a pgx connection string (URL or key=value). Its password
	// should come from PGPASSWORD, PGPASSFILE or Password, never the
	// playbook or a command line.
	DSN string
	// Password, when set, replaces the DSN's (read from a file or the
	// environment by the caller).
	Password string
	// Key seals the results a resume needs (AES-256-GCM), as the key file
	// of a state folder does; 32 bytes. Writers need it; readers (status)
	// do not. Every writer of one database must use the same key: its
	// check value is kept in upshift_meta and a different key is refused.
	Key []byte
	// Retry bounds how long a write is retried while the server is
	// unreachable (0: DefaultPGRetry).
	Retry time.Duration
}

// PGStore is a PostgreSQL database holding clusters' state.
type PGStore struct {
	cfg    PGConfig
	pool   *pgxpool.Pool
	where  string // host:port/database, for messages
	secret string // the password, scrubbed from every error
}

// UnreachableError says the state backend could not be reached for longer
// than its retry bound. Nothing acknowledged is lost: the records not
// written were never acknowledged, and a resume finds the steps as
// running (or pending) and deals with them as after a crash.
type UnreachableError struct {
	Where string
	For   time.Duration
	Err   error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("state backend unreachable: PostgreSQL at %s did not answer for %s (%v)", e.Where, e.For.Round(time.Second), e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// OpenPG connects to the database of cfg and creates or migrates its
// schema. The DSN's password never appears in an error.
func OpenPG(ctx context.Context, cfg PGConfig) (*PGStore, error) {
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultPGRetry
	}
	if cfg.Key != nil && len(cfg.Key) != keyLen {
		return nil, fmt.Errorf("journal: the state key must be %d bytes (%d hex digits), not %d", keyLen, 2*keyLen, len(cfg.Key))
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors may quote the string: say only that it is wrong.
		return nil, errors.New("journal: the state DSN cannot be parsed (check its form: postgres://user@host:port/database or key=value pairs)")
	}
	if cfg.Password != "" {
		pc.ConnConfig.Password = cfg.Password
	}
	pc.MaxConns = 4
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	s := &PGStore{cfg: cfg, secret: pc.ConnConfig.Password,
		where: fmt.Sprintf("%s:%d/%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database)}
	s.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, s.scrub(fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err))
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		if !strings.HasPrefix(err.Error(), "journal: ") {
			err = fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
		}
		return nil, s.scrub(err)
	}
	if cfg.Key != nil {
		if err := s.checkKey(ctx); err != nil {
			s.pool.Close()
			return nil, s.scrub(err)
		}
	}
	return s, nil
}

// Where is host:port/database, for messages (no user, no password).
func (s *PGStore) Where() string { return s.where }

// Close ends the store's connections.
func (s *PGStore) Close() error {
	s.pool.Close()
	return nil
}

// scrub removes the password from err's text.
func (s *PGStore) scrub(err error) error {
	if err == nil || s.secret == "" || !strings.Contains(err.Error(), s.secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), s.secret, "xxxxx"), err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

// Unwrap keeps errors.As working (an *UnreachableError stays one); the
// wrapped error's text is never printed by upshift.
func (e *scrubbedError) Unwrap() error { return e.err }

func (s *PGStore) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
			return fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS upshift_schema_version (version integer NOT NULL)`); err != nil {
			return fmt.Errorf("journal: PostgreSQL at %s: creating the schema: %w", s.where, err)
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM upshift_schema_version`).Scan(&v); err != nil {
			return fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
		}
		if v > pgSchemaVersion {
			return fmt.Errorf("journal: the state in PostgreSQL at %s has schema version %d, newer than this upshift understands (%d); use a newer upshift", s.where, v, pgSchemaVersion)
		}
		for ; v < pgSchemaVersion; v++ {
			if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
				return fmt.Errorf("journal: PostgreSQL at %s: migrating the schema to version %d: %w", s.where, v+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO upshift_schema_version (version) VALUES ($1)`, v+1); err != nil {
				return err
			}
		}
		return nil
	})
}

// keyCheck is what upshift_meta keeps of the key: an HMAC of a constant,
// which tells a wrong key without revealing the right one.
func keyCheck(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("upshift state key check"))
	return hex.EncodeToString(m.Sum(nil))
}

// checkKey records the key's check value the first time and refuses
// another key afterwards: results sealed under one key would not open.
func (s *PGStore) checkKey(ctx context.Context) error {
	want := keyCheck(s.cfg.Key)
	if _, err := s.pool.Exec(ctx, `INSERT INTO upshift_meta (name, value) VALUES ('key_check', $1) ON CONFLICT DO NOTHING`, want); err != nil {
		return fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	var have string
	if err := s.pool.QueryRow(ctx, `SELECT value FROM upshift_meta WHERE name = 'key_check'`).Scan(&have); err != nil {
		return fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	if !hmac.Equal([]byte(have), []byte(want)) {
		return fmt.Errorf("journal: the state key given is not the one the state in PostgreSQL at %s was written with: the results a resume needs would not open. Use the same key file as every other runner of this database (UPSHIFT_STATE_KEY_FILE)", s.where)
	}
	return nil
}

// Register records cluster c (its identity, and its name when the playbook
// renamed it).
func (s *PGStore) Register(ctx context.Context, c *Cluster) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO upshift_clusters (id, name, identity) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, identity = EXCLUDED.identity`, c.ID, c.Name, string(b))
	if err != nil {
		return s.scrub(fmt.Errorf("journal: PostgreSQL at %s: registering cluster %s: %w", s.where, c.Short(), err))
	}
	return nil
}

// Journal returns the journal of cluster c, for a writer (it opens sealed
// results with the store's key). Register c first.
func (s *PGStore) Journal(c *Cluster) *Journal {
	return &Journal{now: time.Now, open: true, key: s.cfg.Key, db: &pgJournal{s: s, cluster: c.ID}}
}

// Current returns cluster c's current run, or nil, as a reader sees it
// (no sealed result).
func (s *PGStore) Current(ctx context.Context, c *Cluster) (*Run, error) {
	run, err := s.loadRun(ctx, s.pool, c.ID, "", false)
	return run, s.scrub(err)
}

// Clusters returns every cluster of the database, the most recently
// updated first, each with its current run and its past runs (PastRuns).
func (s *PGStore) Clusters(ctx context.Context) ([]*ClusterState, error) {
	out, err := s.clusters(ctx)
	return out, s.scrub(err)
}

func (s *PGStore) clusters(ctx context.Context) ([]*ClusterState, error) {
	rows, err := s.pool.Query(ctx, `SELECT identity FROM upshift_clusters`)
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	idents, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	var out []*ClusterState
	for _, ident := range idents {
		var c Cluster
		if err := json.Unmarshal([]byte(ident), &c); err != nil || c.ID == "" {
			return nil, fmt.Errorf("journal: PostgreSQL at %s: a cluster's identity does not read: %v", s.where, err)
		}
		cs := &ClusterState{Cluster: &c, Dir: s.where}
		if cs.Current, err = s.loadRun(ctx, s.pool, c.ID, "", false); err != nil {
			return nil, err
		}
		if cs.Past, err = s.past(ctx, c.ID); err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	sort.SliceStable(out, func(i, k int) bool { return updated(out[i]).After(updated(out[k])) })
	return out, nil
}

// past returns the finished runs of a cluster that are not its current
// one, oldest first, without sealed results.
func (s *PGStore) past(ctx context.Context, cluster string) ([]*Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT run_id FROM upshift_runs WHERE cluster_id = $1 AND NOT current ORDER BY started_at, run_id`, cluster)
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var out []*Run
	for _, id := range ids {
		r, err := s.loadRun(ctx, s.pool, cluster, id, false)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// querier is a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// loadRun reads a run of cluster: run id, or its current run when id is
// "" (nil, nil when it has none). Sealed results are opened with key when
// open, dropped otherwise.
func (s *PGStore) loadRun(ctx context.Context, q querier, cluster, id string, open bool) (*Run, error) {
	var header string
	var err error
	if id == "" {
		err = q.QueryRow(ctx, `SELECT run_id, header FROM upshift_runs WHERE cluster_id = $1 AND current`, cluster).Scan(&id, &header)
	} else {
		err = q.QueryRow(ctx, `SELECT header FROM upshift_runs WHERE cluster_id = $1 AND run_id = $2`, cluster, id).Scan(&header)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	var run Run
	if err := json.Unmarshal([]byte(header), &run); err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: run %s of cluster %s does not read: %v", s.where, id, cluster, err)
	}
	run.Steps = map[string]*Step{}
	rows, err := q.Query(ctx, `SELECT address, step FROM upshift_steps WHERE cluster_id = $1 AND run_id = $2`, cluster, id)
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	for rows.Next() {
		var addr, b string
		if err := rows.Scan(&addr, &b); err != nil {
			rows.Close()
			return nil, err
		}
		var st Step
		if err := json.Unmarshal([]byte(b), &st); err != nil || st.Address != addr {
			rows.Close()
			return nil, fmt.Errorf("journal: PostgreSQL at %s: step %s of run %s does not read (%v)", s.where, addr, id, err)
		}
		run.Steps[addr] = &st
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	rows, err = q.Query(ctx, `SELECT sample FROM upshift_samples WHERE cluster_id = $1 AND run_id = $2 ORDER BY n`, cluster, id)
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, err
		}
		var sm Sample
		if err := json.Unmarshal([]byte(b), &sm); err != nil {
			rows.Close()
			return nil, fmt.Errorf("journal: PostgreSQL at %s: a sample of run %s does not read (%v)", s.where, id, err)
		}
		run.Samples = append(run.Samples, sm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	if open && s.cfg.Key == nil {
		return nil, errors.New("journal: no state key: the results a resume needs are sealed under the key of UPSHIFT_STATE_KEY_FILE")
	}
	if err := openSteps(&run, s.cfg.Key, open, "the state key (UPSHIFT_STATE_KEY_FILE)"); err != nil {
		return nil, err
	}
	return &run, nil
}

// headerJSON is run without its steps and samples, as upshift_runs keeps it.
func headerJSON(run *Run) (string, error) {
	h := *run
	h.Steps, h.Samples = nil, nil
	b, err := json.Marshal(&h)
	return string(b), err
}

// PGLock is a cluster's run lock in PostgreSQL, held for a run.
type PGLock struct {
	s       *PGStore
	cluster string
	key     int32
	token   string
	owner   Owner
	stale   *Owner

	mu   sync.Mutex
	conn *pgx.Conn
	lost error // set when the lock could not be kept (see keep)
	stop chan struct{}
	done chan struct{}
}

// lockKey is the second key of a cluster's advisory lock: 32 bits of its
// ID (the first key is pgLockSpace). Two clusters sharing it would only
// keep each other waiting, and the owner row names the holder.
func lockKey(cluster string) int32 {
	sum := sha256.Sum256([]byte(cluster))
	return int32(binary.BigEndian.Uint32(sum[:4]))
}

// Acquire takes cluster c's run lock without waiting, on a connection of
// its own held until Release; another holder, from any machine, makes it
// a *HeldError naming the holder, its host and since when. A holder that
// died freed the lock with its session: its owner row is then taken over
// (TakenOver). Blank Owner fields are filled in for this process.
func (s *PGStore) Acquire(ctx context.Context, c *Cluster, owner Owner) (*PGLock, error) {
	l, err := s.acquire(ctx, c, owner)
	return l, s.scrub(err)
}

func (s *PGStore) acquire(ctx context.Context, c *Cluster, owner Owner) (*PGLock, error) {
	owner = fillOwner(owner)
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	key := lockKey(c.ID)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(pgLockSpace), key).Scan(&ok); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	if !ok {
		_ = conn.Close(ctx)
		return nil, s.heldError(ctx, c)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	l := &PGLock{s: s, cluster: c.ID, key: key, token: hex.EncodeToString(tok), owner: owner, conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	// We hold the advisory lock, so an owner row left here belongs to a
	// holder whose session ended without Release.
	var prev string
	err = conn.QueryRow(ctx, `SELECT owner FROM upshift_locks WHERE cluster_id = $1`, c.ID).Scan(&prev)
	switch {
	case err == nil:
		var o Owner
		if json.Unmarshal([]byte(prev), &o) != nil {
			o = Owner{}
		}
		l.stale = &o
	case !errors.Is(err, pgx.ErrNoRows):
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	b, _ := json.Marshal(owner)
	if _, err := conn.Exec(ctx, `INSERT INTO upshift_locks (cluster_id, token, owner, since) VALUES ($1, $2, $3, $4)
		ON CONFLICT (cluster_id) DO UPDATE SET token = EXCLUDED.token, owner = EXCLUDED.owner, since = EXCLUDED.since`,
		c.ID, l.token, string(b), owner.Since); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("journal: PostgreSQL at %s: %w", s.where, err)
	}
	go l.keep()
	return l, nil
}

// heldError names the holder from its owner row; a holder that has just
// taken the lock may not have written it yet, so it is read a few times.
func (s *PGStore) heldError(ctx context.Context, c *Cluster) error {
	where := fmt.Sprintf("cluster %s in PostgreSQL at %s", c.Label(), s.where)
	var err error
	for i := 0; i < 10; i++ {
		var b string
		if err = s.pool.QueryRow(ctx, `SELECT owner FROM upshift_locks WHERE cluster_id = $1`, c.ID).Scan(&b); err == nil {
			var o Owner
			if err = json.Unmarshal([]byte(b), &o); err == nil {
				return &HeldError{Dir: where, Owner: &o}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &HeldError{Dir: where, Err: err}
}

// keep watches the lock's connection. When the server goes away, the
// session and its lock go with it: keep reconnects and takes the lock
// again, provided the owner row still carries this lock's token (nobody
// took the cluster in between). Otherwise the lock is lost, and every
// journal write of the run is refused by the token check.
func (l *PGLock) keep() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.lost != nil {
			l.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if l.conn != nil && l.conn.Ping(ctx) == nil {
			cancel()
			l.mu.Unlock()
			continue
		}
		if l.conn != nil {
			_ = l.conn.Close(ctx)
			l.conn = nil
		}
		l.relock(ctx)
		cancel()
		l.mu.Unlock()
	}
}

// relock takes the advisory lock again on a new connection. Caller holds mu.
func (l *PGLock) relock(ctx context.Context) {
	conn, err := pgx.ConnectConfig(ctx, l.s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return // still unreachable: try again at the next tick
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(pgLockSpace), l.key).Scan(&ok); err != nil {
		_ = conn.Close(ctx)
		return
	}
	var tok string
	if ok {
		err = conn.QueryRow(ctx, `SELECT token FROM upshift_locks WHERE cluster_id = $1`, l.cluster).Scan(&tok)
	}
	if !ok || err != nil || tok != l.token {
		_ = conn.Close(ctx)
		l.lost = errors.New("the run lock was lost while PostgreSQL was unreachable, and another run has taken the cluster since")
		return
	}
	l.conn = conn
}

// Owner returns the owner recorded for this lock.
func (l *PGLock) Owner() Owner { return l.owner }

// TakenOver reports the holder whose session ended while holding the
// lock, if this Acquire took its owner row over.
func (l *PGLock) TakenOver() (Owner, bool) {
	if l.stale == nil {
		return Owner{}, false
	}
	return *l.stale, true
}

// Token is the lock's fencing token, which the run's journal writes check.
func (l *PGLock) Token() string { return l.token }

// Release deletes the owner row and ends the lock's session (which frees
// the advisory lock). Releasing twice is a no-op.
func (l *PGLock) Release() error {
	if l == nil || l.stop == nil {
		return nil
	}
	close(l.stop)
	<-l.done
	l.stop = nil
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if l.conn != nil {
		// The row goes first, so that the next holder does not take us
		// for one that died.
		_, err = l.conn.Exec(ctx, `DELETE FROM upshift_locks WHERE cluster_id = $1 AND token = $2`, l.cluster, l.token)
		_ = l.conn.Close(ctx)
		l.conn = nil
	}
	return l.s.scrub(err)
}
