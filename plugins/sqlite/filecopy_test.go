package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
)

// These tests make database A with real SQLite (modernc.org/sqlite), copy
// it with the plugin while other connections write and checkpoint it, and
// check the copy with SQLite's own integrity_check.

// openA opens A with the given journal mode and no automatic checkpoint,
// so that its WAL keeps what is written.
func openA(t *testing.T, path, mode string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode("+mode+")&_pragma=busy_timeout(20000)&_pragma=wal_autocheckpoint(0)")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, db.Ping())
	return db
}

// ledgerA makes A with a ledger: rows 1..n, each written in its own
// transaction with the total, so that a copy holds a committed prefix
// exactly when its ids are 1..k and the total says k.
func ledgerA(t *testing.T, mode string, n int) (string, *sql.DB) {
	path := filepath.Join(t.TempDir(), "a.sqlite")
	db := openA(t, path, mode)
	_, err := db.Exec("create table ledger(id integer primary key, v blob); create table total(n integer); insert into total values (0)")
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		require.NoError(t, appendRow(db, i))
	}
	return path, db
}

func appendRow(db *sql.DB, i int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.Exec("insert into ledger(id, v) values (?, randomblob(600))", i); err != nil {
		return err
	}
	if _, err := tx.Exec("update total set n = ?", i); err != nil {
		return err
	}
	return tx.Commit()
}

// committedPrefix checks B with integrity_check and returns k, B holding
// exactly rows 1..k and the total k.
func committedPrefix(t *testing.T, path string) int {
	db := integrityOK(t, path)
	defer db.Close()
	var count, lo, hi, total int
	require.NoError(t, db.QueryRow("select count(*), coalesce(min(id), 1), coalesce(max(id), 0), (select n from total) from ledger").Scan(&count, &lo, &hi, &total))
	require.Equal(t, 1, lo)
	require.Equal(t, count, hi, "rows 1..k without a gap")
	require.Equal(t, count, total, "the total written with the last row")
	return count
}

// digest is a hash of every row of t(id, v).
func digest(t *testing.T, path, mode string) [32]byte {
	db, err := sql.Open("sqlite", "file:"+path+"?mode="+mode)
	require.NoError(t, err)
	defer db.Close()
	rs, err := db.Query("select id, v from t order by id")
	require.NoError(t, err)
	defer rs.Close()
	h := sha256.New()
	for rs.Next() {
		var id int
		var v []byte
		require.NoError(t, rs.Scan(&id, &v))
		fmt.Fprintf(h, "%d:%x\n", id, v)
	}
	require.NoError(t, rs.Err())
	return [32]byte(h.Sum(nil))
}

func copyTo(t *testing.T, p plugins.Provider, ctx context.Context, b string, progress func(string)) plugins.InvokeResponse {
	return p.Invoke(ctx, plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.True, "run_id": cty.StringVal("r1")}), Progress: progress})
}

// alone asserts that B is one file: no WAL, -shm or journal beside it, no
// temporary file.
func alone(t *testing.T, b string) {
	for _, suffix := range []string{"-wal", "-shm", "-journal", ".upshift-tmp", ".upshift-tmp-wal", ".upshift-tmp-shm"} {
		_, err := os.Stat(b + suffix)
		assert.ErrorIs(t, err, os.ErrNotExist, b+suffix)
	}
}

var walFrames = regexp.MustCompile(`WAL mode: the database file, then (\d+) committed WAL frames`)

func TestFileCopyWhileWritingIsACommittedPrefix(t *testing.T) {
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			smallSteps(t)
			a, db := ledgerA(t, mode, 200)
			p := configured(t, a)
			var committed atomic.Int64
			committed.Store(200)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // bounded: at most 20,000 rows
				defer wg.Done()
				for i := 201; i <= 20000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := appendRow(db, i); err != nil {
						t.Errorf("writer: %v", err)
						return
					}
					committed.Store(int64(i))
				}
			}()
			defer func() { close(stop); wg.Wait() }()
			for i := range 3 {
				b := filepath.Join(filepath.Dir(a), fmt.Sprintf("b%d.sqlite", i))
				var got lines
				before := int(committed.Load())
				r := copyTo(t, p, context.Background(), b, got.add)
				after := int(committed.Load())
				require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
				alone(t, b) // before B is opened, which makes its own -shm
				assert.Equal(t, "file-copy", r.Result.GetAttr("method").AsString(), "%q", got.l)
				k := committedPrefix(t, b)
				assert.GreaterOrEqual(t, k, before, "every row committed before the copy began")
				assert.LessOrEqual(t, k, after+1, "no row beyond those committed (one may be mid-commit as the copy ends)")
				if mode == "wal" {
					assert.NotEmpty(t, got.matching(walFrames), "%q", got.l)
				} else {
					assert.NotEmpty(t, got.matching(regexp.MustCompile(`rollback-journal mode`)), "%q", got.l)
				}
				t.Logf("copy %d: %d rows (%d..%d committed around it)", i, k, before, after)
			}
		})
	}
}

// bigWAL makes A of 2,000 rows in the database file and a WAL that
// rewrites every row (every page of the table): rows that are only in the
// WAL until a checkpoint.
func bigWAL(t *testing.T) (string, *sql.DB) {
	a := filepath.Join(t.TempDir(), "a.sqlite")
	db := openA(t, a, "wal")
	_, err := db.Exec("create table t(id integer primary key, v blob)")
	require.NoError(t, err)
	_, err = db.Exec("with recursive n(i) as (select 1 union all select i+1 from n where i < 2000) insert into t select i, randomblob(1000) from n")
	require.NoError(t, err)
	_, err = db.Exec("pragma wal_checkpoint(truncate)")
	require.NoError(t, err)
	_, err = db.Exec("update t set v = randomblob(1000)")
	require.NoError(t, err)
	st, err := os.Stat(a + "-wal")
	require.NoError(t, err)
	require.Greater(t, st.Size(), int64(2000*1000), "the new rows are in the WAL")
	return a, db
}

func TestFileCopyHasTheWALsRows(t *testing.T) {
	smallSteps(t)
	a, _ := bigWAL(t)
	want := digest(t, a, "ro")
	p := configured(t, a)
	for _, action := range []string{"copy", "backup"} {
		t.Run(action, func(t *testing.T) {
			b := filepath.Join(t.TempDir(), "b.sqlite")
			var got lines
			var r plugins.InvokeResponse
			if action == "copy" {
				r = copyTo(t, p, context.Background(), b, got.add)
			} else {
				r = p.Invoke(context.Background(), plugins.InvokeRequest{Action: "backup", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(b)}), Progress: got.add})
			}
			require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
			alone(t, b) // before B is opened, which makes its own -shm
			m := got.matching(walFrames)
			require.Len(t, m, 1, "%q", got.l)
			assert.NotEqual(t, "0", walFrames.FindStringSubmatch(m[0])[1])
			assert.Equal(t, want, digest(t, b, "ro"), "B has the rows that were only in A's WAL")
			integrityOK(t, b).Close()
		})
	}
}

// integrityOK opens path read-only, requires integrity_check to say ok,
// and returns it open for the caller to close.
func integrityOK(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	var check string
	if err := db.QueryRow("pragma integrity_check").Scan(&check); err != nil || check != "ok" {
		db.Close()
		require.NoError(t, err)
		require.Equal(t, "ok", check)
	}
	return db
}

func TestFileCopyWithACheckpointDuringIt(t *testing.T) {
	smallSteps(t)
	a, writer := bigWAL(t)
	want := digest(t, a, "ro")
	p := configured(t, a)
	b := filepath.Join(filepath.Dir(a), "b.sqlite")

	other, err := sql.Open("sqlite", "file:"+a+"?_pragma=busy_timeout(0)")
	require.NoError(t, err)
	defer other.Close()
	other.SetMaxOpenConns(1)
	var once sync.Once
	var log, moved, truncBusy int
	late := make(chan error, 1)
	afterStep = func(context.Context) {
		once.Do(func() {
			// The copy is inside A's database file: a checkpoint moves
			// every page of the WAL into it, behind and ahead of the copy.
			var busy int
			assert.NoError(t, other.QueryRow("pragma wal_checkpoint(passive)").Scan(&busy, &log, &moved))
			// The WAL cannot be restarted or truncated meanwhile: that
			// takes the write lock the copy holds.
			var l, m int
			assert.NoError(t, other.QueryRow("pragma wal_checkpoint(truncate)").Scan(&truncBusy, &l, &m))
			// A writer waits for the copy; its row is not in B.
			go func() { _, err := writer.Exec("insert into t values (100000, x'00')"); late <- err }()
		})
	}
	t.Cleanup(func() { afterStep = nil })
	var got lines
	r := copyTo(t, p, context.Background(), b, got.add)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	alone(t, b) // before B is opened, which makes its own -shm
	require.NoError(t, <-late)
	assert.Greater(t, log, 450, "the WAL had the rewrite's frames, one a page of the table (2,000 rows of 1,000 bytes)")
	assert.Equal(t, log, moved, "the checkpoint during the copy moved all of them into A's file")
	assert.Equal(t, 1, truncBusy, "a truncating checkpoint is refused while the copy holds the write lock")
	assert.Equal(t, "file-copy", r.Result.GetAttr("method").AsString(), "%q", got.l)
	assert.Equal(t, want, digest(t, b, "ro"), "B is A as it was when the copy took the lock")
	integrityOK(t, b).Close()
}

func TestFileCopyFallsBackWhenTheWriteLockIsHeld(t *testing.T) {
	old := lockWait
	lockWait = 200 * time.Millisecond
	t.Cleanup(func() { lockWait = old })
	a, db := ledgerA(t, "wal", 50)
	ctx := context.Background()
	c, err := db.Conn(ctx)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ExecContext(ctx, "begin immediate")
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "insert into ledger values (51, x'00')")
	require.NoError(t, err)
	defer c.ExecContext(ctx, "rollback") //nolint:errcheck

	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	var got lines
	r := copyTo(t, configured(t, a), ctx, b, got.add)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	alone(t, b) // before B is opened, which makes its own -shm
	assert.Equal(t, "backup-api", r.Result.GetAttr("method").AsString())
	assert.NotEmpty(t, got.matching(regexp.MustCompile(`with the online backup API: the file copy cannot be used \(another connection held A's write lock`)), "%q", got.l)
	assert.Equal(t, 50, committedPrefix(t, b), "the uncommitted row is not in B")
}

func TestCancelledFileCopyInTheWALLeavesNothing(t *testing.T) {
	smallSteps(t)
	a, _ := bigWAL(t)
	want := digest(t, a, "ro")
	p := configured(t, a)
	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled once the WAL's copy has begun.
	var once sync.Once
	afterStep = func(stepCtx context.Context) {
		if _, err := os.Stat(b + ".upshift-tmp-wal"); err == nil {
			once.Do(func() { cancel(); <-stepCtx.Done() })
		}
	}
	t.Cleanup(func() { afterStep = nil })
	r := copyTo(t, p, ctx, b, nil)
	require.True(t, r.Diagnostics.HasErrors(), "a cancelled copy fails")
	assert.Eventually(t, func() bool {
		left, _ := filepath.Glob(b + "*")
		return len(left) == 0
	}, 10*time.Second, 10*time.Millisecond, "no B, no temporary file or WAL, no marker")
	assert.Equal(t, want, digest(t, a, "ro"), "A as it was")
	// And A's write lock is free again.
	_, err := openA(t, a, "wal").Exec("insert into t values (100000, x'00')")
	require.NoError(t, err)
}

// TestFileCopyRollsBackAHotJournal: a writer that died mid-transaction in
// rollback-journal mode left changed pages in A's file and the old ones
// in a hot journal. A plain cp would copy the torn file; the copy takes
// A's lock, which rolls the journal back first.
func TestFileCopyRollsBackAHotJournal(t *testing.T) {
	if a := os.Getenv("UPSHIFT_SQLITE_DIE_MID_TRANSACTION"); a != "" {
		db, err := sql.Open("sqlite", "file:"+a+"?_pragma=cache_size(10)")
		require.NoError(t, err)
		_, err = db.Exec("begin; update t set v = randomblob(1000); insert into t values (100000, x'00')")
		require.NoError(t, err)
		os.Exit(3) // without commit or close: a crash
	}
	a := filepath.Join(t.TempDir(), "a.sqlite")
	db := openA(t, a, "delete")
	_, err := db.Exec("create table t(id integer primary key, v blob)")
	require.NoError(t, err)
	_, err = db.Exec("with recursive n(i) as (select 1 union all select i+1 from n where i < 2000) insert into t select i, randomblob(1000) from n")
	require.NoError(t, err)
	require.NoError(t, db.Close())
	want := digest(t, a, "ro")
	before, err := os.ReadFile(a)
	require.NoError(t, err)

	cmd := exec.Command(os.Args[0], "-test.run=^TestFileCopyRollsBackAHotJournal$")
	cmd.Env = append(os.Environ(), "UPSHIFT_SQLITE_DIE_MID_TRANSACTION="+a)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	st, err := os.Stat(a + "-journal")
	require.NoError(t, err, "a hot journal is left: %s", out)
	require.Positive(t, st.Size())
	torn, err := os.ReadFile(a)
	require.NoError(t, err)
	require.False(t, bytes.Equal(before, torn), "the dead writer changed A's file")

	b := filepath.Join(t.TempDir(), "b.sqlite")
	var got lines
	r := copyTo(t, configured(t, a), context.Background(), b, got.add)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	alone(t, b) // before B is opened, which makes its own -shm
	assert.Equal(t, "file-copy", r.Result.GetAttr("method").AsString(), "%q", got.l)
	assert.Equal(t, want, digest(t, b, "ro"), "B is A before the dead writer's transaction")
	integrityOK(t, b).Close()
}

func TestFileCopyIsAsPrivateAsA(t *testing.T) {
	a, _ := bigWAL(t)
	require.NoError(t, os.Chmod(a, 0o640))
	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	r := copyTo(t, configured(t, a), context.Background(), b, nil)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	alone(t, b) // before B is opened, which makes its own -shm
	st, err := os.Stat(b)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "B has A's mode")

	bak := filepath.Join(t.TempDir(), "backup.sqlite")
	r = invoke(configured(t, a), "backup", map[string]cty.Value{"to": cty.StringVal(bak)})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	alone(t, b) // before B is opened, which makes its own -shm
	st, err = os.Stat(bak)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a backup is private")
}

// TestFileCopyFallsBackWhenAIsOpenedReadOnly: a user who may read A but
// not write it gets a read-only connection from SQLite, on which BEGIN
// IMMEDIATE takes no lock; the copy must not trust it. A is made
// immutable (chattr +i: not even root may open it for writing), so the
// plugin's connection is read-only as another user's would be.
func TestFileCopyFallsBackWhenAIsOpenedReadOnly(t *testing.T) {
	a, db := ledgerA(t, "delete", 50)
	require.NoError(t, db.Close())
	if out, err := exec.Command("chattr", "+i", a).CombinedOutput(); err != nil {
		t.Skipf("chattr +i is not available here (needs root and a file system that has it): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", a).Run() })
	if f, err := os.OpenFile(a, os.O_RDWR, 0); err == nil {
		f.Close()
		t.Skip("an immutable file still opens for writing here")
	}
	b := filepath.Join(t.TempDir(), "b.sqlite")
	var got lines
	r := copyTo(t, configured(t, a), context.Background(), b, got.add)
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.Equal(t, "backup-api", r.Result.GetAttr("method").AsString())
	assert.NotEmpty(t, got.matching(regexp.MustCompile(`the file copy cannot be used \(SQLite opened A read-only`)), "%q", got.l)
	assert.Equal(t, 50, committedPrefix(t, b))
}
