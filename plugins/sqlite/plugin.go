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
	"syscall"

	"github.com/zclconf/go-cty/cty"
	_ "modernc.org/sqlite" // driver "sqlite"

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

// vacuumInto writes a consistent copy of src to dst: VACUUM INTO reads one
// snapshot, so readers and writers of src carry on. The copy is written to
// a temporary name, checked, then renamed.
//
// A backup is private (0600, folders made 0700); a copy (B, which the
// nodes open as A) gets A's mode and, when the plugin runs as root, A's
// owner, so it is never more open than A.
func vacuumInto(ctx context.Context, src, dst string, likeSrc bool) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dst), dbkit.FolderMode); err != nil {
		return 0, err
	}
	tmp := dst + ".upshift-tmp"
	// VACUUM INTO writes into an empty file and keeps its mode.
	if err := dbkit.CreatePrivate(tmp); err != nil {
		return 0, err
	}
	if likeSrc {
		if err := sameAccess(src, tmp); err != nil {
			_ = os.Remove(tmp)
			return 0, err
		}
	}
	s, err := open(src)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("database %s: VACUUM INTO %s: %w", src, dst, err)
	}
	if err := integrity(ctx, tmp); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, err
	}
	st, err := os.Stat(dst)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func integrity(ctx context.Context, path string) error {
	c, err := open(path)
	if err != nil {
		return err
	}
	defer c.Close()
	var res string
	if err := c.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if res != "ok" {
		return fmt.Errorf("the copy %s fails its integrity check: %s", path, res)
	}
	return nil
}

func (d *db) Backup(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	to := r.String("to")
	if !filepath.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "%q must be an absolute path", to)
	}
	r.Progress("backing up %s", d.path)
	n, err := vacuumInto(ctx, d.path, to, false)
	if err != nil {
		return cty.NilVal, err
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(n)})
}

// copyResult is copy's result; method is vacuum-into, or kept for a
// finished copy adopted.
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
	r.Progress("copying %s to %s with VACUUM INTO", d.path, to)
	if _, err := vacuumInto(ctx, d.path, to, true); err != nil {
		return cty.NilVal, err
	}
	if err := d.mark(to, runID, true); err != nil {
		return cty.NilVal, err
	}
	return d.copyResult(r, to, "vacuum-into")
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
