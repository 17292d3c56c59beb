package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
)

// The file copy: a consistent copy of A at the speed of copying its files.
//
// A connection to A takes SQLite's write lock (BEGIN IMMEDIATE) and holds
// it while A's database file, then its WAL, are copied with the kernel's
// copy (copy_file_range, which the filesystem may turn into a reflink).
// Readers of A carry on; writers wait (during an upgrade the nodes are
// read-only anyway). Why the two files are one committed state of A:
//
//   - Rollback-journal mode: the lock is RESERVED, which no other connection
//     can take, and nothing writes the database file without it. Taking it
//     first rolled back any hot journal left by a crashed writer, so the
//     file is committed pages only. The journal is not copied.
//   - WAL mode: no frame is appended, and the WAL is neither restarted nor
//     truncated, without the write lock, so the WAL's committed frames (up
//     to mxFrame, read from the wal-index header under the lock) stay as
//     they are. A checkpoint by another connection may still move pages
//     from the WAL into the database file while it is copied, leaving a
//     page of the copy old, new or torn; every such page has a frame in the
//     WAL, which is copied after the file, so the copy's WAL supersedes it.
//     A page without a frame is never written by a checkpoint. The copy is
//     opened with its WAL and no -shm (never copied: it is rebuilt from the
//     WAL by SQLite's recovery), recovery must find exactly mxFrame frames,
//     and the WAL is then checkpointed into the copy, which ends up one
//     self-contained file, renamed into place alone.
//
// What the fast path cannot check (a journal mode it does not know, a
// wal-index or WAL header that does not agree, a recovery finding other
// than mxFrame frames, the write lock not had in busy_timeout) makes the
// copy fall back to the online backup API, saying why.

// oneAtATime makes this plugin's copies of A one at a time, each from its
// start to its synced end: backup and copy at once, as the shipped
// playbook runs them, would otherwise wait on each other's write lock, and
// one's copy would be slowed (A's write lock held longer) by the other's
// sync of as many bytes to the same disk.
var oneAtATime = make(chan struct{}, 1)

// lockWait is how long the file copy waits for A's write lock before it
// falls back to the backup API, which needs no write lock. A variable for
// tests.
var lockWait = 10 * time.Second

const (
	methodFile   = "file-copy"
	methodBackup = "backup-api"
)

// copyDB writes a consistent copy of src to dst: the file copy, or the
// online backup API where the file copy cannot be proven safe. The copy is
// written to a temporary name, read back, synced, then renamed and the
// folder synced; on failure or cancellation nothing is left. what is the
// copy's name in progress lines.
//
// A backup is private (0600, folders made 0700); a copy (B, which the
// nodes open as A) gets A's mode and, when the plugin runs as root, A's
// owner, so it is never more open than A.
func copyDB(ctx context.Context, r *sdk.Request, what, src, dst string, likeSrc bool) (int64, string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), dbkit.FolderMode); err != nil {
		return 0, "", err
	}
	select {
	case oneAtATime <- struct{}{}:
		defer func() { <-oneAtATime }()
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
	tmp := dst + ".upshift-tmp"
	ok := false
	defer func() {
		if !ok {
			removeDB(tmp)
		}
	}()
	method := methodFile
	why, err := fileCopy(ctx, r, what, src, tmp, likeSrc)
	if err != nil {
		return 0, "", fmt.Errorf("database %s: copying to %s: %w", src, dst, err)
	}
	if why != "" {
		method = methodBackup
		r.Progress("copying %s to %s with the online backup API: the file copy cannot be used (%s)", src, dst, why)
		removeDB(tmp) // with the file copy's WAL and -shm
		if err := newFile(src, tmp, likeSrc); err != nil {
			return 0, "", err
		}
		if err := backupTo(ctx, r, what, src, tmp); err != nil {
			return 0, "", fmt.Errorf("database %s: copying to %s: %w", src, dst, err)
		}
		if err := readable(ctx, tmp); err != nil {
			return 0, "", err
		}
	}
	if err := syncFile(tmp); err != nil {
		return 0, "", err
	}
	// A -wal, -shm or hot -journal left beside a B being replaced would be
	// applied to the new B when it is opened.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(dst + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, "", err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, "", err
	}
	ok = true
	if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
		return 0, "", err
	}
	st, err := os.Stat(dst)
	if err != nil {
		return 0, "", err
	}
	return st.Size(), method, nil
}

// newFile makes path an empty private file, with src's access when like.
func newFile(src, path string, like bool) error {
	if err := dbkit.CreatePrivate(path); err != nil {
		return err
	}
	if like {
		return sameAccess(src, path)
	}
	return nil
}

// fileCopy makes tmp a copy of src by the file copy and reports "" or,
// with no error, why the file copy cannot be used (tmp is then to be
// made again).
func fileCopy(ctx context.Context, r *sdk.Request, what, src, tmp string, likeSrc bool) (string, error) {
	frames, why, err := copyLocked(ctx, r, what, src, tmp, likeSrc)
	if err != nil || why != "" {
		return why, err
	}
	return settle(ctx, tmp, frames)
}

// copyLocked copies A's database file to tmp and, in WAL mode, its
// committed WAL frames to tmp-wal, under A's write lock. frames is the
// number of WAL frames copied, -1 in rollback-journal mode.
func copyLocked(ctx context.Context, r *sdk.Request, what, src, tmp string, likeSrc bool) (frames int64, why string, err error) {
	s, err := open(src)
	if err != nil {
		return 0, "", err
	}
	defer s.Close()
	c, err := s.Conn(ctx)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", lockWait.Milliseconds())); err != nil {
		return 0, "", err
	}
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		if ctx.Err() != nil {
			return 0, "", ctx.Err()
		}
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code()&0xff == sqliteBusy {
			return 0, fmt.Sprintf("another connection held A's write lock for %s", lockWait), nil
		}
		return 0, "", err
	}
	locked := time.Now()
	// The lock goes with the transaction, which wrote nothing.
	defer c.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck // nothing to undo
	// SQLite opens A read-only, silently, when this user cannot write it
	// (or, in WAL mode, its -wal or -shm), and BEGIN IMMEDIATE then takes
	// no write lock: writers would go on during the copy. Writing the
	// header's user_version back unchanged, inside the transaction rolled
	// back above, fails on such a connection and on no other.
	var userVersion int64
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&userVersion); err != nil {
		return 0, "", err
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", userVersion)); err != nil {
		if ctx.Err() != nil {
			return 0, "", ctx.Err()
		}
		return 0, fmt.Sprintf("SQLite opened A read-only for this plugin's user, so it holds no write lock (%v)", err), nil
	}
	var mode, file string
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return 0, "", err
	}
	// The file SQLite opened (links resolved), whose -wal is beside it.
	if err := c.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		return 0, "", err
	}
	if a, b, err := stat2(src, file); err != nil || !os.SameFile(a, b) {
		return 0, fmt.Sprintf("SQLite opened %q, not found to be %s", file, src), nil
	}
	var walBytes int64
	frames = -1
	switch mode {
	case "wal":
		if frames, walBytes, why = walExtent(file); why != "" {
			return 0, why, nil
		}
	case "delete", "truncate", "persist":
	default:
		return 0, "journal mode " + mode, nil
	}
	in, err := os.Open(file)
	if err != nil {
		return 0, "", err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, "", err
	}
	if err := newFile(src, tmp, likeSrc); err != nil {
		return 0, "", err
	}
	if frames >= 0 {
		r.Progress("copying %s as files under its write lock (WAL mode: the database file, then %d committed WAL frames)", src, frames)
	} else {
		r.Progress("copying %s as a file under its write lock (rollback-journal mode)", src)
	}
	var done atomic.Int64
	m := dbkit.StartMeter(r, what, dbkit.Bytes, st.Size()+walBytes, done.Load)
	defer m.Stop()
	// The database file first, to its end as it is then: a checkpoint may
	// grow or shrink it meanwhile, only by pages that are in the WAL.
	if _, err := copyChunks(ctx, tmp, in, -1, &done); err != nil {
		return 0, "", err
	}
	if frames > 0 {
		w, err := os.Open(file + "-wal")
		if err != nil {
			return 0, "", err
		}
		defer w.Close()
		if err := newFile(src, tmp+"-wal", likeSrc); err != nil {
			return 0, "", err
		}
		n, err := copyChunks(ctx, tmp+"-wal", w, walBytes, &done)
		if err != nil {
			return 0, "", err
		}
		if n != walBytes {
			return 0, fmt.Sprintf("the WAL ended at %d bytes, before its %d committed frames (%d bytes)", n, frames, walBytes), nil
		}
	}
	r.Progress("A's write lock held %s", time.Since(locked).Round(time.Millisecond))
	return frames, "", nil
}

const sqliteBusy = 5 // SQLITE_BUSY

func stat2(a, b string) (os.FileInfo, os.FileInfo, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return nil, nil, err
	}
	sb, err := os.Stat(b)
	return sa, sb, err
}

// copyChunks copies in to the file at path (n bytes, or to in's end when
// n < 0) a step at a time, so that progress is counted and a cancellation
// noticed between steps. Between *os.File, io.CopyN is copy_file_range.
func copyChunks(ctx context.Context, path string, in *os.File, n int64, done *atomic.Int64) (int64, error) {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	step := int64(stepPages) * 4096
	var total int64
	for n < 0 || total < n {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		want := step
		if n >= 0 && n-total < want {
			want = n - total
		}
		k, err := io.CopyN(out, in, want)
		total += k
		done.Add(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return total, err
		}
		if afterStep != nil {
			afterStep(ctx)
		}
	}
	return total, out.Close()
}

// walExtent reads, under the write lock, how much of file's WAL is its
// committed frames: mxFrame from the wal-index header in -shm (SQLite's
// own record, which no one changes without the write lock), checked
// against the WAL's header and last frame. Bytes past them are a
// rolled-back transaction's or an older generation's, not to be copied.
func walExtent(file string) (frames, size int64, why string) {
	shm := make([]byte, 96)
	f, err := os.Open(file + "-shm")
	if err != nil {
		return 0, 0, fmt.Sprintf("no wal-index: %v", err)
	}
	_, err = io.ReadFull(f, shm)
	f.Close()
	if err != nil {
		return 0, 0, fmt.Sprintf("reading the wal-index: %v", err)
	}
	// Two copies of the header, equal when it is not being written.
	h := shm[:48]
	ne := binary.NativeEndian
	switch {
	case !bytes.Equal(h, shm[48:96]):
		return 0, 0, "the wal-index header's two copies differ"
	case ne.Uint32(h[0:]) != 3007000 || h[12] != 1:
		return 0, 0, "a wal-index header of an unknown version, or not initialised"
	}
	pageSize := int64(ne.Uint16(h[14:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	mx := int64(ne.Uint32(h[16:]))
	if mx == 0 {
		return 0, 0, "" // every committed page is in the database file
	}
	w, err := os.Open(file + "-wal")
	if err != nil {
		return 0, 0, fmt.Sprintf("no WAL: %v", err)
	}
	defer w.Close()
	frameSize := 24 + pageSize
	size = 32 + mx*frameSize
	hdr := make([]byte, 32)
	last := make([]byte, 24)
	if _, err := w.ReadAt(hdr, 0); err != nil {
		return 0, 0, fmt.Sprintf("reading the WAL header: %v", err)
	}
	if _, err := w.ReadAt(last, size-frameSize); err != nil {
		return 0, 0, fmt.Sprintf("reading the WAL's frame %d: %v", mx, err)
	}
	be := binary.BigEndian
	switch {
	case be.Uint32(hdr[0:])&^1 != 0x377f0682 || be.Uint32(hdr[4:]) != 3007000:
		return 0, 0, "not a WAL header"
	case int64(be.Uint32(hdr[8:])) != pageSize && !(pageSize == 65536 && be.Uint32(hdr[8:]) == 1):
		return 0, 0, "the WAL's page size is not the wal-index's"
	case !bytes.Equal(hdr[16:24], h[32:40]):
		return 0, 0, "the WAL's salt is not the wal-index's"
	case !bytes.Equal(last[8:16], h[32:40]) || be.Uint32(last[4:]) == 0:
		return 0, 0, fmt.Sprintf("the WAL's frame %d is not a commit of this WAL", mx)
	}
	return mx, size, ""
}

// settle opens the copy, whose WAL SQLite's recovery reads (no -shm was
// copied), checks that it found every frame copied, checkpoints the WAL
// into the copy and removes it, leaving one file. frames < 0: rollback
// mode, no WAL.
func settle(ctx context.Context, tmp string, frames int64) (string, error) {
	t, err := open(tmp)
	if err != nil {
		return "", err
	}
	defer t.Close()
	t.SetMaxOpenConns(1)
	if err := readableDB(ctx, t, tmp); err != nil {
		return "", err
	}
	var mode string
	if err := t.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return "", err
	}
	if (mode == "wal") != (frames >= 0) {
		return fmt.Sprintf("the copy opened in journal mode %s", mode), nil
	}
	if frames >= 0 {
		var busy, log, done int64
		if err := t.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
			return "", err
		}
		if busy != 0 || log != frames || done != frames {
			return fmt.Sprintf("recovering the copy's WAL found %d frames of %d (%d checkpointed)", log, frames, done), nil
		}
		if err := t.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err != nil {
			return "", err
		}
		if busy != 0 {
			return "", fmt.Errorf("the copy %s: its WAL could not be emptied", tmp)
		}
	}
	if err := t.Close(); err != nil {
		return "", err
	}
	// The WAL is empty, all of it in the copy: the last connection's
	// close removes it, and the -shm is the copy's own.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(tmp + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", nil
}

// readableDB checks that the copy's schema reads.
func readableDB(ctx context.Context, c *sql.DB, path string) error {
	var n int
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return fmt.Errorf("the copy %s does not read back: %w", path, err)
	}
	return nil
}
