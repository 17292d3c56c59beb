// Package journal owns the on-disk record of a run (.upshift/state) and the
// run lock that keeps two runs off one environment; for a team, the same
// record and lock in PostgreSQL (pg.go, pg_journal.go: a Journal whose db
// is set), and moving state between the two (migrate.go).
//
// The record is a snapshot (run.json) plus an append-only log of step updates
// (run.log, one JSON object per line). An Update is one appended line and one
// fdatasync, so its cost does not grow with the number of steps, and
// concurrent Updates share fdatasyncs (group commit); Record skips the wait
// where losing a record in a crash is harmless. The log is folded into the
// snapshot (compaction) when a run finishes, when a writer resumes a run, and
// when the log grows long. Whatever moment a process dies,
// the state directory holds either the old or the new complete record: the
// snapshot is only ever replaced by rename, and a torn last log line (the one
// update whose Update call never returned) is ignored on load.
//
// Every snapshot and log record ends with its SHA-256, so any other damage
// (a bit flipped, a file cut short or edited) is refused as a CorruptError
// naming the file, never half-read. The unredacted results a resume needs
// are sealed (AES-256-GCM) under a key kept beside them (key, 0600), and the
// run's digest is kept as an HMAC under it (secret.go).
//
// A Journal is safe for concurrent use by the goroutines of one process, but
// only one process may write a state directory at a time: hold the Lock
// (Acquire) before writing. Reading (Load) needs no lock and never modifies
// the files, so `upshift status` can read a journal a run is writing.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Status is the state of a step or of a whole run.
type Status string

// Step and run statuses. Paused and Aborted apply to runs only.
const (
	Pending Status = "pending"
	Running Status = "running"
	Done    Status = "done"
	Failed  Status = "failed"
	Skipped Status = "skipped"
	// RolledBack: the step had finished, and the rollback of its rollout
	// item has begun undoing it (Note says how far). Resume runs it again.
	RolledBack Status = "rolled_back"
	// Paused: a rollout with on_failure = "pause" failed. Stopped: the
	// operator (Ctrl-C, a signal) stopped the run. Both are resumed.
	Paused  Status = "paused"
	Stopped Status = "stopped"
	Aborted Status = "aborted"
)

// Finished reports whether s is final: a run or step in this status will not
// be resumed.
func (s Status) Finished() bool {
	switch s {
	case Done, Failed, Skipped, Aborted:
		return true
	}
	return false
}

func (s Status) validStep() bool {
	switch s {
	case Pending, Running, Done, Failed, Skipped, RolledBack:
		return true
	}
	return false
}

// Step is one step instance's record, keyed by its address, e.g.
// `step.drain["node-1"]` or `step.backup`.
type Step struct {
	Address    string          `json:"address"`
	Status     Status          `json:"status"`
	Action     string          `json:"action,omitempty"`      // e.g. "load_balancer.front.drain"
	Plugin     string          `json:"plugin,omitempty"`      // plugin name
	Checksum   string          `json:"checksum,omitempty"`    // sha256 of the plugin binary
	Args       json.RawMessage `json:"args,omitempty"`        // cty JSON, sensitive values already redacted by the caller
	Result     json.RawMessage `json:"result,omitempty"`      // cty JSON (redacted) for display
	ResultType json.RawMessage `json:"result_type,omitempty"` // cty type JSON so the runner can rebuild the value on resume
	ResultWire json.RawMessage `json:"result_wire,omitempty"` // unredacted value the runner needs on resume (caller decides what goes here)
	Error      string          `json:"error,omitempty"`
	Note       string          `json:"note,omitempty"` // what happened besides the status, e.g. the undo that reverted it
	Attempts   int             `json:"attempts,omitempty"`
	Idempotent bool            `json:"idempotent"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	EndedAt    time.Time       `json:"ended_at,omitzero"`
}

// Run is the whole journal of one playbook run against one environment.
// Steps is keyed by step address; encoding/json writes map keys sorted, so the
// JSON form is deterministic. Use Summarize for a display order.
type Run struct {
	ID        string           `json:"id"`
	Playbook  string           `json:"playbook"`
	Cluster   string           `json:"cluster,omitempty"` // the cluster's identity (Cluster.ID); empty in journals of older versions
	Digest    string           `json:"digest"`            // playbook + variables, so resume can tell the plan changed
	StartedAt time.Time        `json:"started_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Status    Status           `json:"status"`
	Steps     map[string]*Step `json:"steps"`
	// Samples are the traffic guards' readings of the load balancer's
	// counters, oldest first (see samples.go).
	Samples []Sample `json:"samples,omitempty"`
	// Ending says, for a run that did not finish, where it left the
	// cluster (FinishWith); nil otherwise.
	Ending *Ending `json:"ending,omitempty"`
	// Audit says who began the run, where, with which upshift (audit.go);
	// nil in runs of older versions.
	Audit *Audit `json:"audit,omitempty"`
}

// Ending is where a run that did not finish left the cluster.
type Ending struct {
	// PointOfNoReturn is the instance past which the run had gone; ""
	// when it had not (or the playbook marks none).
	PointOfNoReturn string `json:"point_of_no_return,omitempty"`
	// Returned summarises the return to the start of a run that ended
	// before its point of no return.
	Returned string `json:"returned,omitempty"`
	// Standing says where each rollout item stands, past the point of no
	// return.
	Standing []string `json:"standing,omitempty"`
}

// Options tune a Journal. The zero value is what production uses.
type Options struct {
	// NoSync skips fsync/fdatasync. Only for tests and benchmarks that compare
	// costs: without it a crash of the machine may lose acknowledged updates.
	NoSync bool
	// CompactAfter is the number of log records after which an Update folds
	// the log into the snapshot, bounding load time. 0 means 8192.
	CompactAfter int
}

const defaultCompactAfter = 8192

// File names inside the state directory.
const (
	snapshotName = "run.json"
	logName      = "run.log"
	historyName  = "history"
)

// ErrNoRun is returned by Update and Finish when the directory holds no run.
var ErrNoRun = errors.New("journal: no run has begun")

// UnfinishedError is returned by Begin when the current run is not finished:
// it must be resumed, or finished (e.g. Finish(Aborted)) before a new one
// begins, so that no record is ever dropped silently.
type UnfinishedError struct {
	Dir string
	Run *Run
}

func (e *UnfinishedError) Error() string {
	return fmt.Sprintf("journal %s: run %s is %s, not finished; resume it or abort it before beginning a new run",
		e.Dir, e.Run.ID, e.Run.Status)
}

// CorruptError reports a journal file that cannot be read. The file is left
// untouched for the operator to inspect or move aside.
type CorruptError struct {
	Path string
	Line int // 1-based line of run.log, 0 for the snapshot
	Err  error
}

func (e *CorruptError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("journal file %s is corrupt at line %d: %v. upshift will not act on a journal it cannot trust: restore the file from a backup, or move it aside to start over (`upshift status` then shows no run; check the cluster by hand first)", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("journal file %s is corrupt: %v. upshift will not act on a journal it cannot trust: restore the file from a backup, or move it aside to start over (`upshift status` then shows no run; check the cluster by hand first)", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Journal reads and writes the state directory of one environment.
//
// Updates are group-committed: an Update appends its record to a pending
// buffer, and whichever Update gets the I/O lock first writes everything
// pending with one write and one fdatasync. Parallel steps thus share
// fsyncs, and an append never has to wait for a sync in progress.
type Journal struct {
	dir  string
	opts Options
	now  func() time.Time
	// open: Load opens sealed results (the runner needs them to resume).
	// Journals a Store makes for reading leave it false: what they load
	// has no secret in it.
	open bool

	// ioMu serialises writing the files (log appends, fsync, snapshots)
	// and guards flushed and spare. mu guards the in-memory state below.
	// Lock order: ioMu, then mu.
	ioMu    sync.Mutex
	flushed uint64 // last seq written (and synced unless NoSync)
	spare   []byte

	mu      sync.Mutex
	log     *os.File // nil until the first write: readers never open it for writing
	run     *Run     // header only; steps holds the steps
	steps   map[string]json.RawMessage
	idJSON  []byte // run id as a JSON string, for log records
	seq     uint64 // last record made; never goes back, even across runs
	records int    // records in the log since the last compaction
	pending []byte // records not yet written
	broken  error  // set when a failed write or sync leaves the log unknown
	key     []byte // the folder's key, once read or made (see secret.go)
	audit   *Audit // stamped on the run by Begin (SetAudit)

	// db, when set, keeps the records in PostgreSQL instead of the files
	// (pg_journal.go); every exported method then goes to it.
	db *pgJournal
}

// Open returns the journal kept in dir (e.g. <playbook>/.upshift/state),
// creating the directory (0700) if needed. It does not read the files.
func Open(dir string) (*Journal, error) {
	return OpenWithOptions(dir, Options{})
}

// OpenWithOptions is Open with Options.
func OpenWithOptions(dir string, opts Options) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("journal: empty state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if opts.CompactAfter <= 0 {
		opts.CompactAfter = defaultCompactAfter
	}
	return &Journal{dir: dir, opts: opts, now: time.Now, open: true}, nil
}

// Path returns the state directory. The run is in run.json and run.log
// inside it, finished runs under history/.
func (j *Journal) Path() string {
	if j.db != nil {
		return j.db.path()
	}
	return j.dir
}

func (j *Journal) snapshotPath() string { return filepath.Join(j.dir, snapshotName) }
func (j *Journal) logPath() string      { return filepath.Join(j.dir, logName) }
func (j *Journal) historyDir() string   { return filepath.Join(j.dir, historyName) }

// Load returns the current run, or (nil, nil) if none has begun. It reads the
// files afresh and never writes them, so it is safe while another process
// writes. A torn last log line is ignored (its Update never returned); any
// other damage is a *CorruptError.
//
// Results kept sealed (see secret.go) are opened for a Journal made by Open;
// a Store's read-only view (Clusters, Current, Legacy) drops them.
func (j *Journal) Load() (*Run, error) {
	if j.db != nil {
		return j.db.load(j.open)
	}
	st, err := readState(j.snapshotPath(), j.logPath())
	if err != nil {
		return nil, err
	}
	var key []byte
	if j.open && st.run != nil {
		if key, err = readKey(j.keyPath()); err != nil {
			return nil, err
		}
	}
	if err := openSteps(st.run, key, j.open, j.keyPath()); err != nil {
		return nil, err
	}
	return st.run, nil
}

// Begin starts a new run. A finished previous run is archived under
// history/ first; an unfinished one makes Begin fail with *UnfinishedError.
// Steps already in run (e.g. the whole plan as Pending) are recorded too.
// Begin fills a zero StartedAt/UpdatedAt with the current time and an empty
// Status with Running.
func (j *Journal) Begin(run *Run) error {
	if run == nil || run.ID == "" {
		return errors.New("journal: Begin needs a run with an ID")
	}
	if j.db != nil {
		j.mu.Lock()
		audit := j.audit
		j.mu.Unlock()
		return j.db.begin(j.key, run, audit)
	}
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()

	prev, err := readState(j.snapshotPath(), j.logPath())
	if err != nil {
		return err
	}
	// The previous run is over: history keeps none of its sealed results.
	_ = openSteps(prev.run, nil, false, "")
	key, err := j.loadKey(true)
	if err != nil {
		return err
	}
	if prev.run != nil {
		if !prev.run.Status.Finished() {
			return &UnfinishedError{Dir: j.dir, Run: prev.run}
		}
		if prev.run.ID == run.ID {
			return fmt.Errorf("journal %s: run id %q was already used", j.dir, run.ID)
		}
		if err := j.archive(prev); err != nil {
			return err
		}
	}
	if err := j.scrubHistory(); err != nil {
		return err
	}

	hdr := *run
	hdr.Steps = nil
	now := j.now()
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
		hdr.Audit = j.audit
	}
	if hdr.Digest != "" && !strings.HasPrefix(hdr.Digest, digestPrefix) {
		hdr.Digest = keyedDigest(key, hdr.Digest)
	}
	steps, err := encodeSteps(key, run.Steps)
	if err != nil {
		return err
	}

	// The snapshot goes first: a crash before the log is emptied leaves
	// records of the previous run, which load ignores by run id and seq.
	// The log is emptied anyway, so an earlier failed write is forgotten.
	if j.broken != nil {
		_ = j.log.Close()
		j.log, j.broken = nil, nil
	}
	if err := j.openLog(); err != nil {
		return err
	}
	seq := max(j.seq, prev.seq)
	if err := writeSnapshot(j.snapshotPath(), &hdr, steps, seq, !j.opts.NoSync); err != nil {
		return err
	}
	j.setRun(&hdr, steps, seq)
	return j.truncateLog()
}

// Update records a step's new state, replacing the previous record for the
// same address as a whole. It is durable (written and fdatasync'd) when it
// returns.
func (j *Journal) Update(step Step) error {
	if j.db != nil {
		return j.db.update(j.key, step)
	}
	seq, compact, err := j.addSeq(step)
	if err != nil {
		return err
	}
	if err := j.flush(seq); err != nil {
		return err
	}
	if compact {
		j.ioMu.Lock()
		defer j.ioMu.Unlock()
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.broken == nil && j.log != nil && j.records >= j.opts.CompactAfter {
			return j.compact()
		}
	}
	return nil
}

// Record records a step's new state like Update, but does not wait for it to
// be durable: it is handed to the OS at once when no sync is in progress, and
// made durable by the next Update, Sync or Finish. The log keeps order, so a
// crash loses at most a suffix of Record calls, never an Update made after
// them. Use it only where losing the record is harmless, e.g. marking an
// idempotent step running (resume re-runs it whether it reads running or
// pending); it saves one fdatasync per step.
func (j *Journal) Record(step Step) error {
	if j.db != nil {
		return j.db.record(j.key, step)
	}
	if _, _, err := j.addSeq(step); err != nil {
		return err
	}
	if j.ioMu.TryLock() {
		defer j.ioMu.Unlock()
		return j.writePending(false)
	}
	return nil // a flush is in progress; the next one takes this record
}

// Sync makes every record so far durable.
func (j *Journal) Sync() error {
	if j.db != nil {
		return j.db.sync()
	}
	j.mu.Lock()
	seq := j.seq
	j.mu.Unlock()
	return j.flush(seq)
}

// addSeq appends step's record to the pending buffer and applies it to the
// in-memory run. It returns the record's seq and whether the log is due for
// compaction.
func (j *Journal) addSeq(step Step) (uint64, bool, error) {
	if step.Address == "" {
		return 0, false, errors.New("journal: step has no address")
	}
	if !step.Status.validStep() {
		return 0, false, fmt.Errorf("journal: step %s: invalid status %q", step.Address, step.Status)
	}
	// A result to seal needs the key, read by lockPrepared; the others are
	// encoded outside the lock.
	var stepJSON []byte
	if len(step.ResultWire) == 0 {
		b, err := marshalStep(nil, &step)
		if err != nil {
			return 0, false, err
		}
		stepJSON = b
	}
	if err := j.lockPrepared(); err != nil {
		return 0, false, err
	}
	defer j.mu.Unlock()
	if stepJSON == nil {
		b, err := marshalStep(j.key, &step)
		if err != nil {
			return 0, false, err
		}
		stepJSON = b
	}
	now := j.now()
	j.seq++
	j.pending = appendRecord(j.pending, j.seq, j.idJSON, now, stepJSON)
	j.steps[step.Address] = stepJSON
	j.run.UpdatedAt = now
	j.records++
	return j.seq, j.records >= j.opts.CompactAfter, nil
}

// Finish sets the run's final status (Done, Failed, Aborted, or Paused or
// Stopped for a run that will be resumed) and folds the log into the snapshot.
func (j *Journal) Finish(status Status) error { return j.FinishWith(status, nil) }

// FinishWith is Finish, recording where the run left the cluster.
func (j *Journal) FinishWith(status Status, ending *Ending) error {
	switch status {
	case Done, Failed, Aborted, Paused, Stopped:
	default:
		return fmt.Errorf("journal: Finish: invalid run status %q", status)
	}
	if j.db != nil {
		return j.db.finish(status, ending)
	}
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.prepare(); err != nil {
		return err
	}
	j.run.Status = status
	j.run.Ending = ending
	j.run.UpdatedAt = j.now()
	return j.compact()
}

// Close releases the log file. The journal can still be used afterwards: a
// later write reads the files again and repairs a torn log, which is also
// how to recover from a failed write.
func (j *Journal) Close() error {
	if j.db != nil {
		return j.db.close()
	}
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.log != nil {
		err = j.log.Close()
	}
	j.log, j.run, j.steps, j.pending, j.broken = nil, nil, nil, nil, nil
	return err
}

// History returns the paths of archived runs, oldest first.
func (j *Journal) History() ([]string, error) {
	if j.db != nil {
		return nil, nil // PostgreSQL keeps past runs in its tables (ClusterState.Past)
	}
	// Glob sorts, and names start with the UTC start time.
	return filepath.Glob(filepath.Join(j.historyDir(), "*.json"))
}

// LoadFile reads a run from an archived file returned by History.
func LoadFile(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	run, _, _, err := decodeSnapshot(path, b)
	if err != nil {
		return nil, err
	}
	// What the runner kept for a resume has no use once the run is over.
	return run, openSteps(run, nil, false, "")
}

// lockPrepared returns with mu held and j ready to append, taking ioMu
// only the first time, when the files must be read and repaired.
func (j *Journal) lockPrepared() error {
	j.mu.Lock()
	if j.broken == nil && j.log != nil && j.run != nil {
		return nil
	}
	j.mu.Unlock()
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	j.mu.Lock()
	if err := j.prepare(); err != nil {
		j.mu.Unlock()
		return err
	}
	return nil
}

// prepare makes j ready to append: it reads the current state and, when the
// log is not empty (resuming, or a torn last line to cut off), compacts it.
// Only writers get here, and they hold the Lock, so changing files is safe.
// Caller holds ioMu and mu.
func (j *Journal) prepare() error {
	if j.broken != nil {
		return j.broken
	}
	if j.log != nil && j.run != nil {
		return nil
	}
	// Sealed results stay sealed: they are written back as they are, so a
	// writer that does not need them (abort) works without the key.
	st, err := readState(j.snapshotPath(), j.logPath())
	if err != nil {
		return err
	}
	if st.run == nil {
		return ErrNoRun
	}
	key, err := j.loadKey(true)
	if err != nil {
		return err
	}
	steps, err := encodeSteps(key, st.run.Steps)
	if err != nil {
		return err
	}
	hdr := *st.run
	hdr.Steps = nil
	if err := j.openLog(); err != nil {
		return err
	}
	j.setRun(&hdr, steps, max(j.seq, st.seq))
	removeTemps(j.dir)
	if st.logSize > 0 {
		return j.compact()
	}
	return nil
}

func (j *Journal) setRun(hdr *Run, steps map[string]json.RawMessage, seq uint64) {
	j.run, j.steps, j.seq, j.flushed = hdr, steps, seq, seq
	j.idJSON, _ = json.Marshal(hdr.ID)
	j.pending = j.pending[:0]
	j.records = 0
}

func (j *Journal) openLog() error {
	if j.log != nil {
		return nil
	}
	f, err := os.OpenFile(j.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.log = f
	return nil
}

// flush returns once the record seq is written and synced. The first
// caller to get ioMu writes every pending record; the others find their
// record already flushed.
func (j *Journal) flush(seq uint64) error {
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	if j.flushed >= seq {
		return nil
	}
	return j.writePending(true)
}

// writePending writes the pending records in one write and, if sync, makes
// everything written durable. Caller holds ioMu.
func (j *Journal) writePending(sync bool) error {
	j.mu.Lock()
	if j.broken != nil {
		j.mu.Unlock()
		return j.broken
	}
	buf, target, log := j.pending, j.seq, j.log
	j.pending = j.spare[:0]
	j.mu.Unlock()
	if log == nil {
		return nil // closed, or nothing was ever written
	}

	var err error
	if len(buf) > 0 {
		_, err = log.Write(buf)
	}
	if err == nil && sync && !j.opts.NoSync {
		err = datasync(log)
	}
	j.spare = buf[:0]
	if err != nil {
		// A short write leaves part of a line, and after a failed fsync
		// the page cache cannot be trusted: refuse to build on either.
		j.mu.Lock()
		j.broken = fmt.Errorf("journal %s: write failed, Close and retry to recover: %w", j.logPath(), err)
		j.mu.Unlock()
		return j.broken
	}
	if sync {
		j.flushed = target
	}
	return nil
}

// compact writes the whole run (pending records included) as the new
// snapshot, then empties the log. A crash between the two leaves records the
// snapshot already holds; load skips them by seq. Caller holds ioMu and mu.
func (j *Journal) compact() error {
	if err := writeSnapshot(j.snapshotPath(), j.run, j.steps, j.seq, !j.opts.NoSync); err != nil {
		return err
	}
	j.pending = j.pending[:0]
	j.flushed = j.seq
	j.records = 0
	return j.truncateLog()
}

// truncateLog empties the log; the snapshot holds everything. Caller holds
// ioMu and mu.
func (j *Journal) truncateLog() error {
	err := j.log.Truncate(0)
	if err == nil && !j.opts.NoSync {
		err = datasync(j.log)
	}
	if err != nil {
		j.broken = fmt.Errorf("journal %s: truncate failed, Close and retry to recover: %w", j.logPath(), err)
	}
	return j.broken
}

// archive copies a finished run into history/ under a name that sorts by
// start time. Re-archiving after a crash overwrites the same name.
func (j *Journal) archive(st *state) error {
	hist := j.historyDir()
	if err := os.MkdirAll(hist, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if !j.opts.NoSync {
		if err := syncDir(j.dir); err != nil {
			return err
		}
	}
	name := st.run.StartedAt.UTC().Format("20060102T150405Z") + "-" + safeName(st.run.ID) + ".json"
	steps, err := encodeSteps(j.key, st.run.Steps)
	if err != nil {
		return err
	}
	return writeSnapshot(filepath.Join(hist, name), st.run, steps, st.seq, !j.opts.NoSync)
}

// scrubHistory rewrites the archived runs an older upshift left with
// results in clear (result_wire): a finished run needs none. Caller holds
// ioMu and mu.
func (j *Journal) scrubHistory() error {
	paths, err := j.History()
	if err != nil {
		return err
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(`"result_wire":`)) {
			continue
		}
		run, seq, _, err := decodeSnapshot(p, b)
		if err != nil {
			continue // left for the operator, as status shows it
		}
		for _, st := range run.Steps {
			st.ResultWire = nil
		}
		steps, err := encodeSteps(nil, run.Steps)
		if err != nil {
			return err
		}
		if err := writeSnapshot(p, run, steps, seq, !j.opts.NoSync); err != nil {
			return err
		}
	}
	return nil
}

func encodeSteps(key []byte, in map[string]*Step) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(in))
	for addr, s := range in {
		if s == nil || s.Address != addr {
			return nil, fmt.Errorf("journal: step key %q does not match its address", addr)
		}
		b, err := marshalStep(key, s)
		if err != nil {
			return nil, err
		}
		out[addr] = b
	}
	return out, nil
}
