package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Version of the postgres plugin.
const Version = "0.1.0"

// markerPrefix starts the comment a finished copy carries: "upshift copy
// of <A>", then " by run <run_id>" when copy was given one. An existing B
// is adopted or dropped only when its comment names A and this run and the
// connecting role owns it; anything else is another run's or someone
// else's.
//
// A copy by dump and restore given a run id is marked "upshift unfinished
// copy of <A> by run <run_id>" as soon as B is created, so the same run,
// resumed after a crash mid-copy, makes it again rather than finding a B
// it cannot tell from someone else's.
const (
	markerPrefix     = "upshift copy of "
	unfinishedPrefix = "upshift unfinished copy of "
	markerRun        = " by run "
)

var configSchema = dbkit.ServerConfig(
	"Connection to database A (URL or key=value), as a role allowed to create databases. Its password is never shown.",
	"Deadline of each connection and statement outside dumps. Default 30s.")

func newPlugin() *sdk.Plugin {
	d := &pg{}
	return dbkit.Scrub(dbkit.Plugin("postgres", Version, configSchema, d), d.secrets)
}

// secrets are the values no message may carry: the DSN and its password.
func (d *pg) secrets() []string {
	out := []string{d.dsn}
	if d.cfg != nil {
		out = append(out, d.cfg.Password)
	}
	return out
}

var _ dbkit.Database = (*pg)(nil)

type pg struct {
	dsn     string
	cfg     *pgx.ConnConfig
	timeout time.Duration

	lockMu sync.Mutex
	locks  map[string]*pgx.Conn // lock name -> the session holding it
}

func (d *pg) Configure(_ context.Context, req plugins.ConfigureRequest) error {
	var c dbkit.Server
	if err := sdk.Decode(req.Config, &c); err != nil {
		return err
	}
	d.dsn, d.timeout = c.DSN, c.Timeout
	cfg, err := pgx.ParseConfig(d.dsn)
	if err != nil {
		// pgx's message may quote the DSN: say only what is wrong.
		return sdk.ArgError("dsn", "not a PostgreSQL connection string (URL or key=value)")
	}
	if cfg.Database == "" {
		return sdk.ArgError("dsn", "names no database: it must connect to database A")
	}
	d.cfg = cfg
	d.cfg.ConnectTimeout = d.timeout
	return nil
}

var result = dbkit.Result

// where names the server and database in messages, without credentials.
func (d *pg) where(db string) string {
	return fmt.Sprintf("database %q on %s:%d", db, d.cfg.Host, d.cfg.Port)
}

func (d *pg) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return d.connectAs(ctx, db, "")
}

// connectAs is connect with an application_name (when not ""), which
// pg_stat_activity shows every session.
func (d *pg) connectAs(ctx context.Context, db, app string) (*pgx.Conn, error) {
	cfg := d.cfg.Copy()
	cfg.Database = db
	if app != "" {
		if cfg.RuntimeParams == nil {
			cfg.RuntimeParams = map[string]string{}
		}
		cfg.RuntimeParams["application_name"] = app
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %s", d.where(db), cleanErr(err))
	}
	// A read-only A (read_only enabled) must not stop upshift itself from
	// copying it or turning read-only off again.
	if _, err := c.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
		c.Close(context.Background())
		return nil, fmt.Errorf("%s: %w", d.where(db), err)
	}
	return c, nil
}

// cleanErr keeps pgx's reason but not a connection string it may quote.
func cleanErr(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 && strings.Contains(msg[:i], "failed to connect to") {
		return strings.TrimSpace(msg[i+3:])
	}
	return msg
}

// name validates a database name given as an argument.
func name(attr, n string) (string, error) { return dbkit.Name(attr, n, 63) }

// dsnFor is A's DSN with the database replaced: what nodes use to reach B.
func (d *pg) dsnFor(db string) string {
	if u, err := url.Parse(d.dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	re := regexp.MustCompile(`(^|\s)dbname=\S+`)
	if re.MatchString(d.dsn) {
		return re.ReplaceAllString(d.dsn, "${1}dbname="+db)
	}
	return d.dsn + " dbname=" + db
}

// tool finds a PostgreSQL client program: on PATH, else the newest under
// /usr/lib/postgresql (Debian keeps them there).
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if len(dirs) > 0 {
		return dirs[0], nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin: install postgresql-client", name)
}

func version(p string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return v
}

// clientEnv passes the connection to pg_dump/pg_restore in the environment,
// never on the command line where `ps` shows it. It is the minimal child
// environment (procfs.ChildEnv: no secret of upshift's) plus the
// connection, with the same TLS settings as the plugin's own connections:
// the DSN's sslmode, sslrootcert, sslcert, sslkey, sslcrl (or the PGSSL*
// variables the plugin was given, which pgx reads too).
func (d *pg) clientEnv(db string) []string {
	env := map[string]string{
		"PGHOST": d.cfg.Host, "PGPORT": strconv.Itoa(int(d.cfg.Port)), "PGUSER": d.cfg.User, "PGDATABASE": db,
		"PGCONNECT_TIMEOUT": strconv.Itoa(max(1, int(d.timeout.Seconds()))),
	}
	if d.cfg.Password != "" {
		env["PGPASSWORD"] = d.cfg.Password
	}
	for param, name := range tlsParams {
		if v, ok := os.LookupEnv(name); ok {
			env[name] = v
		}
		if v, ok := dsnParam(d.dsn, param); ok {
			env[name] = v
		}
	}
	if _, set := env["PGSSLMODE"]; !set && d.cfg.TLSConfig == nil {
		env["PGSSLMODE"] = "disable"
	}
	return procfs.ChildEnv(env)
}

// tlsParams are libpq's TLS parameters and their environment variables.
var tlsParams = map[string]string{
	"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
	"sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "sslnegotiation": "PGSSLNEGOTIATION",
	"ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
}

// dsnParam is the value of param in a URL or key=value DSN.
func dsnParam(dsn, param string) (string, bool) {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		return q.Get(param), q.Has(param)
	}
	re := regexp.MustCompile(`(?:^|\s)` + regexp.QuoteMeta(param) + `\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
	m := re.FindStringSubmatch(dsn)
	if m == nil {
		return "", false
	}
	v := m[1]
	if strings.HasPrefix(v, "'") {
		v = regexp.MustCompile(`\\(.)`).ReplaceAllString(v[1:len(v)-1], "$1")
	}
	return v, true
}

func (d *pg) run(ctx context.Context, db string, prog string, args ...string) error {
	p, err := tool(prog)
	if err != nil {
		return err
	}
	// In a process group of its own that dies with the step and with this
	// plugin: a killed plugin leaves no pg_dump writing on.
	cmd := exec.Command(p, args...)
	cmd.Env = d.clientEnv(db)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := procfs.RunGroup(ctx, cmd)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	if err != nil {
		return fmt.Errorf("%s on %s: %v: %s", prog, d.where(db), err, lastLines(out.String(), 3))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func (d *pg) Backup(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	to := r.String("to")
	if !filepath.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "%q must be an absolute path", to)
	}
	if err := os.MkdirAll(filepath.Dir(to), dbkit.FolderMode); err != nil {
		return cty.NilVal, err
	}
	tmp := to + ".upshift-tmp"
	defer os.Remove(tmp)
	// The dump holds every row of A: the file is made private before
	// pg_dump writes into it (it keeps an existing file's mode).
	if err := dbkit.CreatePrivate(tmp); err != nil {
		return cty.NilVal, err
	}
	r.Progress("pg_dump of %s", d.where(d.cfg.Database))
	// The dump is compressed: its size says how much is written, not how
	// much of A is left, so the meter shows no total.
	m := dbkit.StartMeter(r, "backup", dbkit.Bytes, 0, func() int64 { return fileSize(tmp) })
	err := d.run(ctx, d.cfg.Database, "pg_dump", "--format=custom", "--file="+tmp)
	m.Stop()
	if err != nil {
		return cty.NilVal, err
	}
	// A dump pg_restore cannot list is no backup.
	if err := d.run(ctx, d.cfg.Database, "pg_restore", "--list", tmp); err != nil {
		return cty.NilVal, fmt.Errorf("the backup does not read back: %w", err)
	}
	if err := os.Rename(tmp, to); err != nil {
		return cty.NilVal, err
	}
	st, err := os.Stat(to)
	if err != nil {
		return cty.NilVal, err
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(st.Size())})
}

// state says whether db exists, and what it is: its marker (a finished
// copy of A, and of which run) and whether the role upshift connects as
// owns it.
func (d *pg) state(ctx context.Context, c *pgx.Conn, db string) (exists bool, e dbkit.Existing, err error) {
	var comment *string
	var owner, me string
	err = c.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba), current_user FROM pg_database WHERE datname = $1`, db).Scan(&comment, &owner, &me)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, e, nil
	}
	if err != nil {
		return false, e, err
	}
	if comment != nil {
		e = parseMarker(*comment, d.cfg.Database)
	}
	if owner != me {
		e.Foreign = fmt.Sprintf("is owned by role %q, not by %q, the role upshift connects as", owner, me)
	}
	return true, e, nil
}

// marker is the comment of a finished copy of a made by run (may be "").
func marker(a, run string) string {
	if run == "" {
		return markerPrefix + a
	}
	return markerPrefix + a + markerRun + run
}

func parseMarker(comment, a string) dbkit.Existing {
	if run, ok := strings.CutPrefix(comment, unfinishedPrefix+a+markerRun); ok {
		return dbkit.Existing{Marked: true, RunID: run, Unfinished: true}
	}
	switch {
	case comment == markerPrefix+a:
		return dbkit.Existing{Marked: true}
	case strings.HasPrefix(comment, markerPrefix+a+markerRun):
		return dbkit.Existing{Marked: true, RunID: strings.TrimPrefix(comment, markerPrefix+a+markerRun)}
	}
	return dbkit.Existing{}
}

func (d *pg) copyResult(r *sdk.Request, b, method string) (cty.Value, error) {
	return result(r, map[string]cty.Value{"name": cty.StringVal(b), "dsn": cty.StringVal(d.dsnFor(b)), "method": cty.StringVal(method)})
}

func (d *pg) Copy(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	b, err := name("to", r.String("to"))
	if err != nil {
		return cty.NilVal, err
	}
	if b == d.cfg.Database {
		return cty.NilVal, sdk.ArgError("to", "%q is database A itself", b)
	}
	runID, err := dbkit.RunID(r)
	if err != nil {
		return cty.NilVal, err
	}
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close(context.Background())
	exists, existing, err := d.state(ctx, c, b)
	if err != nil {
		return cty.NilVal, fmt.Errorf("%s: %w", d.where(b), err)
	}
	if exists {
		keep, err := dbkit.KeepExisting(r, d.where(b), existing)
		switch {
		case err != nil:
			return cty.NilVal, err
		case keep:
			return d.copyResult(r, b, "kept")
		}
		if _, err := c.Exec(ctx, "DROP DATABASE "+pgx.Identifier{b}.Sanitize()+" WITH (FORCE)"); err != nil {
			return cty.NilVal, fmt.Errorf("dropping %s: %w", d.where(b), err)
		}
	}

	method := "template"
	var others int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`, d.cfg.Database).Scan(&others); err != nil {
		return cty.NilVal, err
	}
	// CREATE DATABASE ... TEMPLATE copies files, fast and exact, but only
	// while no other session is connected to A; with the old nodes still
	// serving reads from A, dump and restore is the way. (Only clients
	// count: an autovacuum worker on A is not a node, and PostgreSQL ends it.)
	if others == 0 {
		// PostgreSQL 15 made WAL_LOG the default: it writes every page of
		// A to the WAL as well, twice the I/O of FILE_COPY's file copy and
		// one checkpoint (3x slower at 1 GB; see docs/performance.md).
		var num int
		strategy := ""
		if err := c.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err == nil && num >= 150000 {
			strategy = " STRATEGY = FILE_COPY"
		}
		r.Progress("copying %s to %s with CREATE DATABASE ... TEMPLATE%s", d.cfg.Database, b, strategy)
		_, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{b}.Sanitize()+" TEMPLATE "+pgx.Identifier{d.cfg.Database}.Sanitize()+strategy)
	}
	if others > 0 || err != nil {
		method = "dump-restore"
		why := fmt.Sprintf("%d other sessions are connected to %s", others, d.cfg.Database)
		if err != nil {
			why = "TEMPLATE failed: " + err.Error()
		}
		r.Progress("copying by parallel pg_dump and pg_restore (%d jobs): %s", jobs(), why)
		if err := d.dumpRestore(ctx, r, c, b, runID); err != nil {
			// The half B goes; the step's context may be over, so the drop
			// gets a deadline of its own.
			dctx, cancel := context.WithTimeout(context.Background(), d.timeout)
			defer cancel()
			if _, derr := c.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b}.Sanitize()+" WITH (FORCE)"); derr != nil {
				return cty.NilVal, fmt.Errorf("%w; and the unfinished %s could not be dropped (drop it yourself): %v", err, d.where(b), derr)
			}
			return cty.NilVal, err
		}
	}
	if _, err := c.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{b}.Sanitize()+" IS "+quote(marker(d.cfg.Database, runID))); err != nil {
		return cty.NilVal, err
	}
	return d.copyResult(r, b, method)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// jobs is how many tables pg_dump and pg_restore work on at once: one a
// core, as pg_restore's documentation advises, at least two so that one
// big table does not hold up the small ones.
func jobs() int { return min(max(runtime.NumCPU(), 2), 8) }

// dumpRestore copies A into a new B when TEMPLATE cannot: a parallel dump
// (directory format, one synchronized snapshot across its jobs,
// uncompressed since it lives for seconds) then a parallel restore, which
// loads tables and builds indexes several at a time.
func (d *pg) dumpRestore(ctx context.Context, r *sdk.Request, c *pgx.Conn, b, runID string) error {
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{b}.Sanitize()); err != nil {
		return fmt.Errorf("creating %s: %w", d.where(b), err)
	}
	if runID != "" {
		if _, err := c.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{b}.Sanitize()+" IS "+quote(unfinishedPrefix+d.cfg.Database+markerRun+runID)); err != nil {
			return fmt.Errorf("marking %s: %w", d.where(b), err)
		}
	}
	var tables, total int64
	if err := c.QueryRow(ctx, `SELECT coalesce(sum(pg_table_size(oid)), 0) FROM pg_class WHERE relkind IN ('r', 'm') AND relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)`).Scan(&tables); err != nil {
		return err
	}
	if err := c.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&total); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "upshift-pg-copy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dump := filepath.Join(dir, "a")
	n := strconv.Itoa(jobs())
	m := dbkit.StartMeter(r, "dump", dbkit.Bytes, tables, func() int64 { return dirSize(dump) })
	err = d.run(ctx, d.cfg.Database, "pg_dump", "--format=directory", "--compress=0", "--jobs="+n, "--file="+dump)
	m.Stop()
	if err != nil {
		return err
	}
	sizeOfB, closeB := d.sizeOf(ctx, b)
	defer closeB()
	m = dbkit.StartMeter(r, "restore", dbkit.Bytes, total, sizeOfB)
	defer m.Stop()
	return d.run(ctx, b, "pg_restore", "--no-owner", "--exit-on-error", "--jobs="+n, "--dbname="+b, dump)
}

// sizeOf returns a reader of db's size on disk over a connection of its
// own (a Meter reads it from its goroutine), and the connection's close.
func (d *pg) sizeOf(ctx context.Context, db string) (func() int64, func()) {
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return func() int64 { return 0 }, func() {}
	}
	var mu sync.Mutex
	return func() int64 {
			mu.Lock()
			defer mu.Unlock()
			var n int64
			qctx, cancel := context.WithTimeout(ctx, d.timeout)
			defer cancel()
			_ = c.QueryRow(qctx, `SELECT pg_database_size($1)`, db).Scan(&n)
			return n
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			c.Close(context.Background())
		}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// dirSize is the bytes in the files of dir (pg_dump's output so far).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if st, err := e.Info(); err == nil {
				n += st.Size()
			}
		}
		return nil
	})
	return n
}

func (d *pg) CheckCopy(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	b, err := name("to", r.String("to"))
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	defer c.Close(context.Background())
	exists, existing, err := d.state(ctx, c, b)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	return dbkit.CheckCopy(r, d.where(b), exists, existing, func() (cty.Value, error) { return d.copyResult(r, b, "kept") })
}

func (d *pg) ReadOnly(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	enabled := r.Bool("enabled", true)
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close(context.Background())
	// Applies to sessions opened from now on; sessions already open keep
	// their setting, which is why the node pool's read-only mode comes first.
	if _, err := c.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{d.cfg.Database}.Sanitize()+" SET default_transaction_read_only = "+map[bool]string{true: "on", false: "off"}[enabled]); err != nil {
		return cty.NilVal, fmt.Errorf("%s: %w", d.where(d.cfg.Database), err)
	}
	r.Progress("default_transaction_read_only = %t on %s (new sessions)", enabled, d.cfg.Database)
	return result(r, map[string]cty.Value{"enabled": cty.BoolVal(enabled)})
}

func (d *pg) Drop(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	b, err := name("name", r.String("name"))
	if err != nil {
		return cty.NilVal, err
	}
	if b == d.cfg.Database {
		return cty.NilVal, sdk.ArgError("name", "%s is database A, which the nodes use; it is never dropped", d.where(b))
	}
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close(context.Background())
	exists, existing, err := d.state(ctx, c, b)
	if err != nil {
		return cty.NilVal, err
	}
	if may, err := dbkit.MayDrop(r, d.where(b), exists, existing); err != nil || !may {
		return dbkit.Dropped(r, false, err)
	}
	var sessions int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, b).Scan(&sessions); err != nil {
		return cty.NilVal, err
	}
	if sessions > 0 {
		return cty.NilVal, fmt.Errorf("%s has %d open sessions (nodes may be using it); not dropping it", d.where(b), sessions)
	}
	if _, err := c.Exec(ctx, "DROP DATABASE "+pgx.Identifier{b}.Sanitize()); err != nil {
		return cty.NilVal, fmt.Errorf("dropping %s: %w", d.where(b), err)
	}
	return dbkit.Dropped(r, true, nil)
}

func (d *pg) Check(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close(context.Background())
	var v string
	if err := c.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return cty.NilVal, fmt.Errorf("%s: %w", d.where(d.cfg.Database), err)
	}
	return result(r, map[string]cty.Value{"name": cty.StringVal(d.cfg.Database), "version": cty.StringVal(v)})
}
