// A Journal whose records are kept in PostgreSQL (pg.go), with the
// guarantees of the files: an Update returns once its transaction has
// committed; concurrent Updates share a transaction (group commit); Record
// and RecordSample do not wait, and the next Update, Sync or Finish
// commits them. Every write is an upsert keyed by (cluster, run, address)
// or by the sample's number, so a transaction retried after a lost
// connection (which may or may not have committed) changes nothing twice.
//
// While the server cannot be reached, a write is retried with backoff up
// to PGConfig.Retry; meanwhile every Record waits too, so no new step
// starts. Past the bound the journal is broken: every later write fails
// with the *UnreachableError, and the command stops the run.

package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type pgJournal struct {
	s       *PGStore
	cluster string
	token   string // the run lock's fencing token; "" writes unfenced (tests, migrate)
	// onBroken is called once when the backend stays unreachable past the
	// retry bound (the command stops the run).
	onBroken func(error)

	ioMu    sync.Mutex // serialises transactions; guards flushed
	flushed uint64

	mu       sync.Mutex
	run      *Run // header; nil until Begin or prepare
	order    []string
	pending  map[string]string // address -> step JSON not yet committed
	samples  []pgSample
	nsample  int64
	seq      uint64
	dirty    bool // the header changed (status, ending) since the last commit
	retrying bool // a write is waiting for the server: Record waits too
	broken   error
}

type pgSample struct {
	n    int64
	json string
}

// WithLock fences j's writes with lock's token: once another run holds
// the cluster, nothing of this one is written. onBroken is called once
// when the backend stays unreachable past its retry bound.
func (j *Journal) WithLock(l *PGLock, onBroken func(error)) {
	if j.db == nil {
		return
	}
	j.db.mu.Lock()
	defer j.db.mu.Unlock()
	if l != nil {
		j.db.token = l.token
	}
	j.db.onBroken = onBroken
}

func (d *pgJournal) load(open bool) (*Run, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var run *Run
	err := d.retry(ctx, func(ctx context.Context) error {
		var err error
		run, err = d.s.loadRun(ctx, d.s.pool, d.cluster, "", open)
		return err
	})
	return run, d.s.scrub(err)
}

func (d *pgJournal) begin(key []byte, run *Run, audit *Audit) error {
	d.ioMu.Lock()
	defer d.ioMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return d.broken
	}
	hdr := *run
	hdr.Steps, hdr.Samples = nil, nil
	now := time.Now()
	if hdr.StartedAt.IsZero() {
		hdr.StartedAt = now
	}
	if hdr.UpdatedAt.IsZero() {
		hdr.UpdatedAt = hdr.StartedAt
	}
	if hdr.Status == "" {
		hdr.Status = Running
	}
	if hdr.Audit == nil {
		hdr.Audit = audit
	}
	if key == nil {
		return errors.New("journal: no state key: a run kept in PostgreSQL seals the results a resume needs under the key of UPSHIFT_STATE_KEY_FILE")
	}
	if hdr.Digest != "" && !strings.HasPrefix(hdr.Digest, digestPrefix) {
		hdr.Digest = keyedDigest(key, hdr.Digest)
	}
	steps, err := encodeSteps(key, run.Steps)
	if err != nil {
		return err
	}
	header, err := headerJSON(&hdr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	attempts := 0
	err = d.retry(ctx, func(ctx context.Context) error {
		attempts++
		return pgx.BeginFunc(ctx, d.s.pool, func(tx pgx.Tx) error {
			if err := d.fence(ctx, tx); err != nil {
				return err
			}
			var prevID, prevStatus, prevHeader string
			err := tx.QueryRow(ctx, `SELECT run_id, status, header FROM upshift_runs WHERE cluster_id = $1 AND current FOR UPDATE`, d.cluster).Scan(&prevID, &prevStatus, &prevHeader)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			case prevID == hdr.ID && attempts > 1 && prevHeader == header:
				// An earlier attempt committed, but its answer was lost
				// with the connection: the run has begun.
				return errBegun
			case prevID == hdr.ID:
				return fmt.Errorf("journal: run id %q was already used", hdr.ID)
			case !Status(prevStatus).Finished():
				prev, lerr := d.s.loadRun(ctx, tx, d.cluster, prevID, false)
				if lerr != nil {
					return lerr
				}
				return &UnfinishedError{Dir: "PostgreSQL at " + d.s.where, Run: prev}
			default:
				// The previous run is over: history keeps none of its
				// sealed results.
				if err := scrubRun(ctx, tx, d.cluster, prevID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE upshift_runs SET current = false WHERE cluster_id = $1 AND run_id = $2`, d.cluster, prevID); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO upshift_runs (cluster_id, run_id, current, status, started_at, updated_at, header) VALUES ($1, $2, true, $3, $4, $5, $6)`,
				d.cluster, hdr.ID, string(hdr.Status), hdr.StartedAt, hdr.UpdatedAt, header); err != nil {
				return err
			}
			rows := make([][]any, 0, len(steps))
			for addr, b := range steps {
				rows = append(rows, []any{d.cluster, hdr.ID, addr, string(b)})
			}
			_, err = tx.CopyFrom(ctx, pgx.Identifier{"upshift_steps"}, []string{"cluster_id", "run_id", "address", "step"}, pgx.CopyFromRows(rows))
			return err
		})
	})
	if err != nil && !errors.Is(err, errBegun) {
		return d.s.scrub(err)
	}
	d.run = &hdr
	d.pending, d.order, d.samples, d.nsample, d.dirty = map[string]string{}, nil, nil, 0, false
	d.flushed = d.seq
	return nil
}

// scrubRun drops the sealed results of a finished run.
func scrubRun(ctx context.Context, tx pgx.Tx, cluster, run string) error {
	rows, err := tx.Query(ctx, `SELECT address, step FROM upshift_steps WHERE cluster_id = $1 AND run_id = $2 AND strpos(step, '"result_wire":') > 0`, cluster, run)
	if err != nil {
		return err
	}
	type kv struct{ addr, step string }
	var todo []kv
	for rows.Next() {
		var addr, b string
		if err := rows.Scan(&addr, &b); err != nil {
			rows.Close()
			return err
		}
		var st Step
		if err := json.Unmarshal([]byte(b), &st); err != nil {
			continue
		}
		st.ResultWire = nil
		nb, err := json.Marshal(&st)
		if err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, kv{addr, string(nb)})
	}
	rows.Close()
	for _, e := range todo {
		if _, err := tx.Exec(ctx, `UPDATE upshift_steps SET step = $4 WHERE cluster_id = $1 AND run_id = $2 AND address = $3`, cluster, run, e.addr, e.step); err != nil {
			return err
		}
	}
	return rows.Err()
}

// fence fails the transaction when this journal's lock is no longer the
// cluster's: another run holds it, and nothing of this one may be written.
func (d *pgJournal) fence(ctx context.Context, tx pgx.Tx) error {
	if d.token == "" {
		return nil
	}
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM upshift_locks WHERE cluster_id = $1 AND token = $2)`, d.cluster, d.token).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errLockLost
	}
	return nil
}

// lockLostMark is the text the fence of a batch fails to cast when the
// run's lock token is no longer the cluster's.
const lockLostMark = "upshift run lock lost"

// errBegun ends a retried Begin whose first attempt had committed.
var errBegun = errors.New("journal: the run had begun")

var errLockLost = errors.New("journal: this run no longer holds the cluster's lock in PostgreSQL (another run took it while the server was unreachable); nothing more of this run is written")

// prepare reads the current run the first time a write needs it (a
// resume). Caller holds mu.
func (d *pgJournal) prepare() error {
	if d.broken != nil {
		return d.broken
	}
	if d.run != nil {
		return nil
	}
	ctx := context.Background()
	var hdr *Run
	var n int64
	err := d.retry(ctx, func(ctx context.Context) error {
		r, err := d.s.loadRun(ctx, d.s.pool, d.cluster, "", false)
		if err != nil {
			return err
		}
		if r == nil {
			return ErrNoRun
		}
		hdr = r
		return d.s.pool.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM upshift_samples WHERE cluster_id = $1 AND run_id = $2`, d.cluster, r.ID).Scan(&n)
	})
	if err != nil {
		return d.s.scrub(err)
	}
	hdr.Steps, hdr.Samples = nil, nil
	d.run, d.nsample = hdr, n
	if d.pending == nil {
		d.pending = map[string]string{}
	}
	return nil
}

// add queues a step record; it returns its seq.
func (d *pgJournal) add(key []byte, step Step) (uint64, error) {
	if step.Address == "" {
		return 0, errors.New("journal: step has no address")
	}
	if !step.Status.validStep() {
		return 0, fmt.Errorf("journal: step %s: invalid status %q", step.Address, step.Status)
	}
	b, err := marshalStep(key, &step)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.prepare(); err != nil {
		return 0, err
	}
	if _, ok := d.pending[step.Address]; !ok {
		d.order = append(d.order, step.Address)
	}
	d.pending[step.Address] = string(b)
	d.run.UpdatedAt = time.Now()
	d.seq++
	return d.seq, nil
}

func (d *pgJournal) addSample(s Sample, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.prepare(); err != nil {
		return err
	}
	d.nsample++
	d.samples = append(d.samples, pgSample{n: d.nsample, json: string(b)})
	d.seq++
	return nil
}

func (d *pgJournal) update(key []byte, step Step) error {
	seq, err := d.add(key, step)
	if err != nil {
		return err
	}
	return d.flush(seq)
}

// record queues step and commits what is queued unless a commit is under
// way (which the next one takes). While the server is unreachable it
// waits like an Update, so that no new step starts.
func (d *pgJournal) record(key []byte, step Step) error {
	seq, err := d.add(key, step)
	if err != nil {
		return err
	}
	return d.nudge(seq)
}

func (d *pgJournal) recordSample(s Sample, b []byte) error {
	if err := d.addSample(s, b); err != nil {
		return err
	}
	d.mu.Lock()
	seq := d.seq
	d.mu.Unlock()
	return d.nudge(seq)
}

func (d *pgJournal) nudge(seq uint64) error {
	d.mu.Lock()
	retrying := d.retrying
	d.mu.Unlock()
	if retrying {
		return d.flush(seq)
	}
	if d.ioMu.TryLock() {
		defer d.ioMu.Unlock()
		return d.commit(false)
	}
	return nil
}

func (d *pgJournal) sync() error {
	d.mu.Lock()
	seq := d.seq
	d.mu.Unlock()
	return d.flush(seq)
}

// flush returns once record seq is committed; the first caller to get
// ioMu commits everything queued.
func (d *pgJournal) flush(seq uint64) error {
	d.ioMu.Lock()
	defer d.ioMu.Unlock()
	if d.flushed >= seq {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.broken
	}
	return d.commit(false)
}

func (d *pgJournal) finish(status Status, ending *Ending) error {
	d.ioMu.Lock()
	defer d.ioMu.Unlock()
	d.mu.Lock()
	if err := d.prepare(); err != nil {
		d.mu.Unlock()
		return err
	}
	d.run.Status = status
	d.run.Ending = ending
	d.run.UpdatedAt = time.Now()
	d.dirty = true
	d.mu.Unlock()
	return d.commit(true)
}

// commit writes everything queued, and the header, in one transaction,
// retried while the server is unreachable. Caller holds ioMu.
func (d *pgJournal) commit(always bool) error {
	d.mu.Lock()
	if d.broken != nil {
		d.mu.Unlock()
		return d.broken
	}
	if d.run == nil || (!always && len(d.pending) == 0 && len(d.samples) == 0 && !d.dirty) {
		d.flushed = d.seq
		d.mu.Unlock()
		return nil
	}
	steps, order, samples := d.pending, d.order, d.samples
	d.pending, d.order, d.samples = map[string]string{}, nil, nil
	target := d.seq
	runID, status, updated := d.run.ID, d.run.Status, d.run.UpdatedAt
	header, herr := headerJSON(d.run)
	d.dirty = false
	d.mu.Unlock()
	if herr != nil {
		return herr
	}

	// One round trip: a batch runs as one implicit transaction, which the
	// fence's failed cast aborts whole. It is built afresh for each attempt:
	// a batch once sent refers to statements prepared on its connection.
	batch := func() *pgx.Batch {
		b := &pgx.Batch{}
		if d.token != "" {
			b.Queue(`SELECT (CASE WHEN EXISTS (SELECT 1 FROM upshift_locks WHERE cluster_id = $1 AND token = $2) THEN '1' ELSE '`+lockLostMark+`' END)::int`, d.cluster, d.token)
		}
		b.Queue(`UPDATE upshift_runs SET status = $3, updated_at = $4, header = $5 WHERE cluster_id = $1 AND run_id = $2`, d.cluster, runID, string(status), updated, header)
		for _, addr := range order {
			b.Queue(`INSERT INTO upshift_steps (cluster_id, run_id, address, step) VALUES ($1, $2, $3, $4)
				ON CONFLICT (cluster_id, run_id, address) DO UPDATE SET step = EXCLUDED.step`, d.cluster, runID, addr, steps[addr])
		}
		for _, s := range samples {
			b.Queue(`INSERT INTO upshift_samples (cluster_id, run_id, n, sample) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, d.cluster, runID, s.n, s.json)
		}
		return b
	}
	err := d.retry(context.Background(), func(ctx context.Context) error {
		err := d.s.pool.SendBatch(ctx, batch()).Close()
		if err != nil && strings.Contains(err.Error(), lockLostMark) {
			return errLockLost
		}
		return err
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.broken = d.s.scrub(err)
		if d.onBroken != nil {
			go d.onBroken(d.broken)
			d.onBroken = nil
		}
		return d.broken
	}
	d.flushed = target
	return nil
}

// retry runs f until it succeeds, fails for a reason other than the
// server being unreachable, or the server has been unreachable for the
// retry bound (then an *UnreachableError).
func (d *pgJournal) retry(ctx context.Context, f func(context.Context) error) error {
	start := time.Now()
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(cctx)
		cancel()
		if err == nil || !unreachable(err) {
			d.setRetrying(false)
			return err
		}
		if time.Since(start) >= d.s.cfg.Retry {
			d.setRetrying(false)
			return &UnreachableError{Where: d.s.where, For: time.Since(start), Err: err}
		}
		d.setRetrying(true)
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

func (d *pgJournal) setRetrying(v bool) {
	// retry may run with mu held (prepare): TryLock keeps it from waiting
	// on itself; the flag is a hint for Record.
	if d.mu.TryLock() {
		d.retrying = v
		d.mu.Unlock()
	}
}

// unreachable reports whether err says the server could not be reached
// or went away, rather than refusing what was asked.
func unreachable(err error) bool {
	if errors.Is(err, errLockLost) {
		return false
	}
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		code := pgErr.SQLState()
		// 57P01..57P03: admin shutdown, crash shutdown, cannot connect now;
		// class 08: connection exceptions; 26000: a statement prepared on a
		// session the server no longer has (it restarted).
		return code == "57P01" || code == "57P02" || code == "57P03" || code == "26000" || len(code) == 5 && code[:2] == "08"
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &connErr), errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection refused")
}

func (d *pgJournal) close() error {
	d.ioMu.Lock()
	defer d.ioMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.run, d.pending, d.order, d.samples = nil, nil, nil, nil
	return nil
}

func (d *pgJournal) path() string {
	short := d.cluster
	if len(short) > clusterShortLen {
		short = short[:clusterShortLen]
	}
	return "PostgreSQL at " + d.s.where + " (cluster " + short + ")"
}
