package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Version of the mysql plugin.
const Version = "0.1.0"

// markerTable in B says it is a copy made by upshift: one row, the source
// database A, the run_id copy was given (NULL when none) and whether the
// copy finished. Copy writes it as soon as it creates B (finished = 0), so
// the same run, resumed after a crash mid-copy, makes B again. An existing
// B is adopted only when it names A and this run and is finished. Dumps
// leave it out, so a copy of a copy does not inherit its source's marker.
const markerTable = "_upshift_copy"

var configSchema = dbkit.ServerConfig(
	"go-sql-driver DSN of database A (user:password@tcp(host:port)/name), as a user allowed to create databases. Its password is never shown.",
	"Deadline of connections and statements outside dumps. Default 30s.")

func newPlugin() *sdk.Plugin {
	d := &my{}
	return dbkit.Scrub(dbkit.Plugin("mysql", Version, configSchema, d), d.secrets)
}

// secrets are the values no message may carry: the DSN and its password.
func (d *my) secrets() []string {
	if d.cfg == nil {
		return nil
	}
	return []string{d.cfg.FormatDSN(), d.cfg.Passwd}
}

var _ dbkit.Database = (*my)(nil)

type my struct {
	cfg     *mysql.Config
	timeout time.Duration

	lockMu sync.Mutex
	locks  map[string]*held // lock name -> the connection holding it
}

func (d *my) Configure(_ context.Context, req plugins.ConfigureRequest) error {
	var c dbkit.Server
	if err := sdk.Decode(req.Config, &c); err != nil {
		return err
	}
	cfg, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return sdk.ArgError("dsn", "not a go-sql-driver DSN (user:password@tcp(host:port)/name)")
	}
	if cfg.DBName == "" {
		return sdk.ArgError("dsn", "names no database: it must name database A")
	}
	d.cfg, d.timeout = cfg, c.Timeout
	d.cfg.Timeout, d.cfg.ReadTimeout, d.cfg.WriteTimeout = d.timeout, d.timeout, d.timeout
	return nil
}

var result = dbkit.Result

func (d *my) where(db string) string { return fmt.Sprintf("database %q on %s", db, d.cfg.Addr) }

func (d *my) dsnFor(db string) string {
	c := d.cfg.Clone()
	c.DBName = db
	c.Timeout, c.ReadTimeout, c.WriteTimeout = 0, 0, 0
	return c.FormatDSN()
}

// open connects to the server (no database selected).
func (d *my) open(ctx context.Context) (*sql.DB, error) {
	c := d.cfg.Clone()
	c.DBName = ""
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to %s: %v", d.where(d.cfg.DBName), err)
	}
	return db, nil
}

// name validates a database name given as an argument.
func name(attr, n string) (string, error) { return dbkit.Name(attr, n, 64) }

// state says whether db exists, and what its marker says: a finished copy
// of A, and of which run.
func (d *my) state(ctx context.Context, c *sql.DB, db string) (exists bool, e dbkit.Existing, err error) {
	var n int
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", db).Scan(&n); err != nil {
		return false, e, err
	}
	if n == 0 {
		return false, e, nil
	}
	type row struct {
		src      string
		run      sql.NullString
		finished bool
	}
	var marks []row
	rows, err := c.QueryContext(ctx, "SELECT source, run_id, finished FROM `"+db+"`."+markerTable)
	if err != nil {
		// No marker table (not ours), or one from before run ids.
		var src string
		if c.QueryRowContext(ctx, "SELECT source FROM `"+db+"`."+markerTable+" LIMIT 1").Scan(&src) == nil && src == d.cfg.DBName {
			return true, dbkit.Existing{Marked: true}, nil
		}
		return true, e, nil
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.src, &r.run, &r.finished); err != nil {
			return true, e, nil
		}
		marks = append(marks, r)
	}
	if rows.Err() != nil || len(marks) != 1 || marks[0].src != d.cfg.DBName {
		return true, e, nil // one row naming A, or it is no marker of ours
	}
	return true, dbkit.Existing{Marked: true, RunID: marks[0].run.String, Unfinished: !marks[0].finished}, nil
}

// defaultsFile gives the client programs their credentials in a 0600 file,
// never on the command line where `ps` shows them.
func (d *my) defaultsFile(dir string) (string, error) {
	host, port := d.cfg.Addr, "3306"
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	var b strings.Builder
	b.WriteString("[client]\n")
	for _, kv := range [][2]string{{"user", d.cfg.User}, {"host", host}, {"port", port}, {"password", d.cfg.Passwd}} {
		if kv[0] == "password" && kv[1] == "" {
			continue
		}
		v, err := optionValue(kv[1])
		if err != nil {
			return "", fmt.Errorf("the DSN's %s %v", kv[0], err)
		}
		fmt.Fprintf(&b, "%s=%s\n", kv[0], v)
	}
	b.WriteString("protocol=tcp\n")
	b.WriteString(tlsOptions(d.cfg.TLSConfig))
	p := filepath.Join(dir, "client.cnf")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

// optionValue quotes v for a MySQL/MariaDB option file: in double quotes
// (so # and ; are not comments, spaces at either end stay), with the
// escapes both read (\\, \n, \r, \t, \b): a password cannot end its line
// and add an option of its own. Both keep a " inside the quotes as it is.
func optionValue(v string) (string, error) {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(v) {
		switch c {
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case 0:
			return "", errors.New("holds a NUL byte, which an option file cannot carry")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// tlsOptions are the option-file lines giving the client tools the TLS
// the plugin's own connections use (the DSN's tls parameter). MySQL and
// MariaDB name them differently: both are written, each with loose- so
// that the other's client ignores it. A custom TLS config name has no
// option-file form: those tools then require TLS, with verification.
func tlsOptions(mode string) string {
	switch strings.ToLower(mode) {
	case "", "false":
		return ""
	case "skip-verify":
		return "loose-ssl-mode=REQUIRED\nloose-ssl\nloose-disable-ssl-verify-server-cert\n"
	case "preferred":
		return "loose-ssl-mode=PREFERRED\nloose-ssl\nloose-disable-ssl-verify-server-cert\n"
	default: // "true", or a registered config: verify the server
		return "loose-ssl-mode=VERIFY_IDENTITY\nloose-ssl\nloose-ssl-verify-server-cert\n"
	}
}

func tool(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %v on PATH: install mariadb-client", names)
}

// dump writes a consistent dump of A to w: one transaction, so it sees one
// moment of InnoDB tables while the database keeps serving.
func (d *my) dump(ctx context.Context, cnf string, w io.Writer) error {
	p, err := tool("mariadb-dump", "mysqldump")
	if err != nil {
		return err
	}
	cmd := exec.Command(p, "--defaults-extra-file="+cnf, "--single-transaction", "--routines", "--triggers", "--events",
		"--ignore-table="+d.cfg.DBName+"."+lockTable, "--ignore-table="+d.cfg.DBName+"."+markerTable, d.cfg.DBName)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := runGroup(ctx, cmd); err != nil {
		return fmt.Errorf("dumping %s: %v: %s", d.where(d.cfg.DBName), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// runGroup runs a client tool in a process group of its own that dies with
// the step and with this plugin (a killed plugin leaves no dump or restore
// running on), and turns a failed exit into an error.
func runGroup(ctx context.Context, cmd *exec.Cmd) error {
	code, err := procfs.RunGroup(ctx, cmd)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	return err
}

func (d *my) Backup(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	to := r.String("to")
	if !filepath.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "%q must be an absolute path", to)
	}
	dir, err := os.MkdirTemp("", "upshift-mysql-")
	if err != nil {
		return cty.NilVal, err
	}
	defer os.RemoveAll(dir)
	cnf, err := d.defaultsFile(dir)
	if err != nil {
		return cty.NilVal, err
	}
	if err := os.MkdirAll(filepath.Dir(to), dbkit.FolderMode); err != nil {
		return cty.NilVal, err
	}
	tmp := to + ".upshift-tmp"
	defer os.Remove(tmp)
	if err := dbkit.CreatePrivate(tmp); err != nil {
		return cty.NilVal, err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return cty.NilVal, err
	}
	// The dump writes into the file itself (no pipe through this
	// process); progress is the file's size.
	m := dbkit.StartMeter(r, "backup", dbkit.Bytes, 0, func() int64 {
		st, err := f.Stat()
		if err != nil {
			return 0
		}
		return st.Size()
	})
	err = d.dump(ctx, cnf, f)
	m.Stop()
	// On disk before the run goes on to change anything: a backup lost
	// to a crash of the machine is no backup (pg_dump syncs its output
	// for the same reason).
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cty.NilVal, err
	}
	// A dump that was cut short lacks its closing line.
	if err := complete(tmp); err != nil {
		return cty.NilVal, err
	}
	if err := os.Rename(tmp, to); err != nil {
		return cty.NilVal, err
	}
	st, _ := os.Stat(to)
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(st.Size())})
}

func complete(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, _ := f.Stat()
	buf := make([]byte, min(st.Size(), 512))
	if _, err := f.ReadAt(buf, st.Size()-int64(len(buf))); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if !bytes.Contains(buf, []byte("-- Dump completed")) {
		return fmt.Errorf("the dump %s is incomplete (no \"-- Dump completed\" line)", path)
	}
	return nil
}

// copyResult is copy's result; method is dump-restore, or kept for a
// finished copy adopted.
func (d *my) copyResult(r *sdk.Request, b, method string) (cty.Value, error) {
	return result(r, map[string]cty.Value{"name": cty.StringVal(b), "dsn": cty.StringVal(d.dsnFor(b)), "method": cty.StringVal(method)})
}

func (d *my) Copy(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	b, err := name("to", r.String("to"))
	if err != nil {
		return cty.NilVal, err
	}
	if b == d.cfg.DBName {
		return cty.NilVal, sdk.ArgError("to", "%q is database A itself", b)
	}
	runID, err := dbkit.RunID(r)
	if err != nil {
		return cty.NilVal, err
	}
	c, err := d.open(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close()
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
		if _, err := c.ExecContext(ctx, "DROP DATABASE `"+b+"`"); err != nil {
			return cty.NilVal, err
		}
	}
	method, err := d.dumpRestore(ctx, c, b, runID, r)
	if err != nil {
		// The half B goes; the step's context may be over, so the drop
		// gets a deadline of its own.
		dctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		defer cancel()
		if _, derr := c.ExecContext(dctx, "DROP DATABASE IF EXISTS `"+b+"`"); derr != nil {
			return cty.NilVal, fmt.Errorf("%w; and the unfinished %s could not be dropped (drop it yourself): %v", err, d.where(b), derr)
		}
		return cty.NilVal, err
	}
	return d.copyResult(r, b, method)
}

// dumpRestore makes the new database B a copy of A and marks it a
// finished copy; it returns how. MariaDB has no in-server database copy:
// the fast way is parallelCopy, inside the server; without the privilege
// to lock A's tables, a consistent dump piped into B. Both keep tables,
// views, routines, triggers and events.
func (d *my) dumpRestore(ctx context.Context, c *sql.DB, b, runID string, r *sdk.Request) (string, error) {
	if _, err := c.ExecContext(ctx, "CREATE DATABASE `"+b+"`"); err != nil {
		return "", fmt.Errorf("creating %s: %w", d.where(b), err)
	}
	marker := "`" + b + "`." + markerTable
	if _, err := c.ExecContext(ctx, "CREATE TABLE "+marker+" (source VARCHAR(64) NOT NULL, run_id VARCHAR(128) NULL, finished BOOLEAN NOT NULL)"); err != nil {
		return "", fmt.Errorf("marking %s: %w", d.where(b), err)
	}
	if _, err := c.ExecContext(ctx, "INSERT INTO "+marker+" VALUES (?, ?, FALSE)", d.cfg.DBName, sql.NullString{String: runID, Valid: runID != ""}); err != nil {
		return "", fmt.Errorf("marking %s: %w", d.where(b), err)
	}
	dir, err := os.MkdirTemp("", "upshift-mysql-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cnf, err := d.defaultsFile(dir)
	if err != nil {
		return "", err
	}
	method := "parallel"
	r.Progress("copying %s to %s inside the server, %d tables at a time", d.cfg.DBName, b, workers())
	err = d.parallelCopy(ctx, r, b, cnf)
	var noLock errNoLock
	if errors.As(err, &noLock) {
		r.Progress("%v; copying by dump and restore instead", err)
		method, err = "dump-restore", d.pipeDump(ctx, cnf, b)
	}
	if err != nil {
		return "", err
	}
	_, err = c.ExecContext(ctx, "UPDATE "+marker+" SET finished = TRUE")
	return method, err
}

// pipeDump pipes a consistent dump of A into B.
func (d *my) pipeDump(ctx context.Context, cnf, b string) error {
	client, err := tool("mariadb", "mysql")
	if err != nil {
		return err
	}
	restore := exec.Command(client, "--defaults-extra-file="+cnf, b)
	in, out := io.Pipe()
	var stderr bytes.Buffer
	restore.Stdin, restore.Stderr = in, &stderr
	restored := make(chan error, 1)
	go func() {
		err := runGroup(ctx, restore)
		// A restore that ended early must not leave the dump blocked
		// writing into a pipe nobody reads.
		in.CloseWithError(io.ErrClosedPipe)
		restored <- err
	}()
	dumpErr := d.dump(ctx, cnf, out)
	out.Close()
	if err := <-restored; err != nil {
		return fmt.Errorf("restoring into %s: %v: %s", d.where(b), err, strings.TrimSpace(stderr.String()))
	}
	return dumpErr
}

func (d *my) CheckCopy(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	b, err := name("to", r.String("to"))
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	c, err := d.open(ctx)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	defer c.Close()
	exists, existing, err := d.state(ctx, c, b)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	return dbkit.CheckCopy(r, d.where(b), exists, existing, func() (cty.Value, error) { return d.copyResult(r, b, "kept") })
}

func (d *my) ReadOnly(context.Context, *sdk.Request) (cty.Value, error) {
	return cty.NilVal, errors.New("MariaDB has no read-only mode for one database (only the whole server's read_only, which would stop every other database too); use the node pool's read_only, as the shipped playbook does")
}

func (d *my) Drop(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	b, err := name("name", r.String("name"))
	if err != nil {
		return cty.NilVal, err
	}
	if b == d.cfg.DBName {
		return cty.NilVal, sdk.ArgError("name", "%s is database A, which the nodes use; it is never dropped", d.where(b))
	}
	c, err := d.open(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close()
	exists, existing, err := d.state(ctx, c, b)
	if err != nil {
		return cty.NilVal, err
	}
	if may, err := dbkit.MayDrop(r, d.where(b), exists, existing); err != nil || !may {
		return dbkit.Dropped(r, false, err)
	}
	var sessions int
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()", b).Scan(&sessions); err != nil {
		return cty.NilVal, err
	}
	if sessions > 0 {
		return cty.NilVal, fmt.Errorf("%s has %d open sessions (nodes may be using it); not dropping it", d.where(b), sessions)
	}
	if _, err := c.ExecContext(ctx, "DROP DATABASE `"+b+"`"); err != nil {
		return cty.NilVal, fmt.Errorf("dropping %s: %w", d.where(b), err)
	}
	return dbkit.Dropped(r, true, nil)
}

func (d *my) Check(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	c, err := d.open(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	defer c.Close()
	var n int
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", d.cfg.DBName).Scan(&n); err != nil {
		return cty.NilVal, err
	}
	if n == 0 {
		return cty.NilVal, fmt.Errorf("%s does not exist", d.where(d.cfg.DBName))
	}
	var v string
	if err := c.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v); err != nil {
		return cty.NilVal, err
	}
	return result(r, map[string]cty.Value{"name": cty.StringVal(d.cfg.DBName), "version": cty.StringVal(v)})
}
