package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zclconf/go-cty/cty"
	"modernc.org/sqlite" // driver "sqlite", and its online backup

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the sqlite plugin.
const Version = "0.1.0"

// copyMarker is written beside a copy: its first line is the path of A,
// then "run_id <id>" when copy was given one, then "unfinished" until the
// copy is in place (so the same run, resumed after a crash, makes it
// again). An existing B is adopted only when its marker names A and this
// run and is finished; without a marker, B is someone else's.
const copyMarker = ".upshift-copy"

var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "path", Type: cty.String, Required: true, Description: "Path of the database file the nodes use now (database A)."},
}}

func newPlugin() *sdk.Plugin { return dbkit.Plugin("sqlite", Version, configSchema, &db{}) }

// db is the configured plugin: the path of database A.
var _ dbkit.Database = (*db)(nil)

type db struct {
	path string

	lockMu sync.Mutex
	locks  map[string]*os.File // lock name -> the open, flocked lock file
}

func (d *db) Configure(_ context.Context, req plugins.ConfigureRequest) error {
	var c struct {
		Path string `cty:"path"`
	}
	if err := sdk.Decode(req.Config, &c); err != nil {
		return err
	}
	if !filepath.IsAbs(c.Path) {
		return sdk.ArgError("path", "%q must be an absolute path", c.Path)
	}
	d.path = c.Path
	return nil
}

var result = dbkit.Result

// open opens a database file read-write, refusing to create it.
func open(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return db, nil
}

// stepPages is how many pages one step copies (16 MiB of 4 KiB pages), by
// the backup API or the file copy: progress between steps, a cancelled
// step noticed soon. A variable so that tests can make many steps of a
// small database.
var stepPages int32 = 4096

// afterStep, when set (by tests), runs after each step of either way with
// the step's context.
var afterStep func(context.Context)

// backuper is the part of modernc.org/sqlite's connection that starts an
// online backup.
type backuper interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
}

func backupTo(ctx context.Context, r *sdk.Request, what, src, dst string) error {
	s, err := open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := s.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// One read transaction over every step: one snapshot of A.
	if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	defer c.ExecContext(context.Background(), "ROLLBACK") //nolint:errcheck // a read transaction; nothing to undo
	var pageSize, pages int64
	if err := c.QueryRowContext(ctx, "SELECT page_size, page_count FROM pragma_page_size, pragma_page_count").Scan(&pageSize, &pages); err != nil {
		return err
	}
	var done atomic.Int64
	m := dbkit.StartMeter(r, what, dbkit.Bytes, pageSize*pages, done.Load)
	defer m.Stop()
	// The copy is a temporary file until it is read back and renamed: no
	// journal or sync of its own is needed while it is written.
	dstURI := "file:" + dst + "?_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)"
	return c.Raw(func(dc any) error {
		bc, ok := dc.(backuper)
		if !ok {
			return fmt.Errorf("the SQLite driver %T has no online backup", dc)
		}
		bk, err := bc.NewBackup(dstURI)
		if err != nil {
			return err
		}
		for more := true; more; {
			if err := ctx.Err(); err != nil {
				_ = bk.Finish()
				return err
			}
			if more, err = bk.Step(stepPages); err != nil {
				_ = bk.Finish()
				return err
			}
			done.Store(int64(bk.PageCount()-bk.Remaining()) * pageSize)
			if afterStep != nil {
				afterStep(ctx)
			}
		}
		return bk.Finish()
	})
}

// readable checks that the copy opens and its schema reads. The pages are
// SQLite's own, copied from one snapshot: a full integrity check would
// read the whole file again for nothing the copy can have changed.
func readable(ctx context.Context, path string) error {
	c, err := open(path)
	if err != nil {
		return err
	}
	defer c.Close()
	return readableDB(ctx, c, path)
}

// syncFile makes path durable before it is renamed into place.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// removeDB removes a database file and what SQLite may have left beside it.
func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		_ = os.Remove(path + suffix)
	}
}

func (d *db) Backup(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	to := r.String("to")
	if !filepath.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "%q must be an absolute path", to)
	}
	r.Progress("backing up %s to %s", d.path, to)
	n, _, err := copyDB(ctx, r, "backup", d.path, to, false)
	if err != nil {
		return cty.NilVal, err
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(n)})
}

// copyResult is copy's result; method is file-copy or backup-api (the
// way B was made, see copyDB), or kept for a finished copy adopted.
func (d *db) copyResult(r *sdk.Request, to, method string) (cty.Value, error) {
	return result(r, map[string]cty.Value{"name": cty.StringVal(to), "dsn": cty.StringVal(to), "method": cty.StringVal(method)})
}

func (d *db) target(r *sdk.Request) (string, error) {
	to := r.String("to")
	switch {
	case !filepath.IsAbs(to):
		return "", sdk.ArgError("to", "%q must be an absolute path", to)
	case filepath.Clean(to) == filepath.Clean(d.path):
		return "", sdk.ArgError("to", "%q is database A itself", to)
	}
	return to, nil
}

// existing reads the marker beside path: a finished copy of A, and of
// which run.
func (d *db) existing(path string) dbkit.Existing {
	b, err := os.ReadFile(path + copyMarker)
	if err != nil {
		return dbkit.Existing{}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if lines[0] != d.path {
		return dbkit.Existing{}
	}
	e := dbkit.Existing{Marked: true}
	for i, l := range lines[1:] {
		run, isRun := strings.CutPrefix(l, "run_id ")
		switch {
		case isRun && i == 0:
			e.RunID = run
		case l == "unfinished" && i == len(lines)-2:
			e.Unfinished = true
		default:
			return dbkit.Existing{} // not a marker this plugin writes
		}
	}
	return e
}

// mark writes the marker beside B: of A, by runID, finished or not.
func (d *db) mark(to, runID string, finished bool) error {
	m := d.path + "\n"
	if runID != "" {
		m += "run_id " + runID + "\n"
	}
	if !finished {
		m += "unfinished\n"
	}
	return os.WriteFile(to+copyMarker, []byte(m), dbkit.FileMode)
}

// sameAccess gives dst src's mode and, as root, its owner.
func sameAccess(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.Chmod(dst, st.Mode().Perm()); err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		return os.Chown(dst, int(sys.Uid), int(sys.Gid))
	}
	return nil
}

func (d *db) Copy(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	to, err := d.target(r)
	if err != nil {
		return cty.NilVal, err
	}
	runID, err := dbkit.RunID(r)
	if err != nil {
		return cty.NilVal, err
	}
	if _, err := os.Stat(to); err == nil {
		keep, err := dbkit.KeepExisting(r, to, d.existing(to))
		switch {
		case err != nil:
			return cty.NilVal, err
		case keep:
			return d.copyResult(r, to, "kept")
		}
	}
	// Marked unfinished before B is written: a crash before the end leaves
	// B for this run, resumed, to make again.
	if err := d.mark(to, runID, false); err != nil {
		return cty.NilVal, err
	}
	r.Progress("copying %s to %s", d.path, to)
	_, method, err := copyDB(ctx, r, "copy", d.path, to, true)
	if err != nil {
		// No B was made: its marker goes too, so nothing is left claimed
		// by this run. (A B being replaced stays, marked unfinished, for
		// this run, resumed, to make again.)
		if _, serr := os.Stat(to); errors.Is(serr, os.ErrNotExist) {
			_ = os.Remove(to + copyMarker)
		}
		return cty.NilVal, err
	}
	if err := d.mark(to, runID, true); err != nil {
		return cty.NilVal, err
	}
	return d.copyResult(r, to, method)
}

func (d *db) CheckCopy(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	to, err := d.target(r)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	_, err = os.Stat(to)
	return dbkit.CheckCopy(r, to, err == nil, d.existing(to), func() (cty.Value, error) { return d.copyResult(r, to, "kept") })
}

func (d *db) ReadOnly(context.Context, *sdk.Request) (cty.Value, error) {
	return cty.NilVal, errors.New("SQLite has no server to make read-only: the file is opened by the nodes themselves; use the node pool's read_only action, which the shipped playbook does")
}

func (d *db) Drop(_ context.Context, r *sdk.Request) (cty.Value, error) {
	name := r.String("name")
	if !filepath.IsAbs(name) {
		return cty.NilVal, sdk.ArgError("name", "%q must be an absolute path", name)
	}
	if filepath.Clean(name) == filepath.Clean(d.path) {
		return cty.NilVal, sdk.ArgError("name", "%s is database A, which the nodes use; it is never dropped", name)
	}
	_, err := os.Stat(name)
	if may, err := dbkit.MayDrop(r, name, !errors.Is(err, os.ErrNotExist), d.existing(name)); err != nil || !may {
		return dbkit.Dropped(r, false, err)
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal", copyMarker} {
		if err := os.Remove(name + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return cty.NilVal, err
		}
	}
	return dbkit.Dropped(r, true, nil)
}

func (d *db) Check(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	c, err := open(d.path)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close()
	var v string
	if err := c.QueryRowContext(ctx, "select sqlite_version()").Scan(&v); err != nil {
		return cty.NilVal, fmt.Errorf("database %s: %w", d.path, err)
	}
	return result(r, map[string]cty.Value{"name": cty.StringVal(d.path), "version": cty.StringVal(strings.TrimSpace(v))})
}
