package lab

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"   // driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/upshift-dev/upshift/internal/servers/mariadbd"
	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// Database engines the lab can put under its nodes.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	MySQL    = "mysql"
)

// externalAdmin is the admin DSN of a server the operator chose with
// UPSHIFT_LAB_POSTGRES or UPSHIFT_LAB_MYSQL instead of the lab's own.
func externalAdmin(engine string) string {
	switch engine {
	case Postgres:
		return os.Getenv("UPSHIFT_LAB_POSTGRES")
	case MySQL:
		return os.Getenv("UPSHIFT_LAB_MYSQL")
	}
	return ""
}

// DB is the lab's database A (and the name B will have), as each side
// needs it: platformd's driver and DSN, the playbook's plugin and config.
type DB struct {
	Engine string `json:"engine"`
	A      string `json:"a"`   // file path, or database name
	B      string `json:"b"`   // file path, or database name
	DSN    string `json:"dsn"` // platformd's db.dsn for A
	// Admin reaches the server as its superuser, to create and drop the
	// lab's databases.
	Admin string `json:"admin,omitempty"`
	// Server is the folder of the lab's own PostgreSQL or MariaDB, started
	// detached with the lab and stopped with it; empty for SQLite or for a
	// server named by UPSHIFT_LAB_POSTGRES / UPSHIFT_LAB_MYSQL.
	Server string `json:"server,omitempty"`
}

// ownServer is the lab's own PostgreSQL or MariaDB, started detached in
// its folder: both packages' Detached types answer alike.
type ownServer interface {
	Running() bool
	// Stop stops it, keeping its data.
	Stop() error
	// Remove deletes a stopped server with its data, which for PostgreSQL
	// may live outside the lab's folder (see postgresd); it refuses while
	// the server runs.
	Remove() error
}

// server is the lab's own database server, or nil when it has none
// (SQLite, or a server named by UPSHIFT_LAB_POSTGRES / UPSHIFT_LAB_MYSQL).
func (d DB) server() ownServer {
	switch {
	case d.Server == "":
		return nil
	case d.Engine == Postgres:
		return postgresd.DetachedAt(d.Server)
	default:
		return mariadbd.DetachedAt(d.Server)
	}
}

// serverUp reports whether the lab has a server of its own, running.
func (d DB) serverUp() bool {
	srv := d.server()
	return srv != nil && srv.Running()
}

// startServer starts the lab's own server for engine in dir (a fresh one
// the first time) and returns its admin DSN.
func startServer(ctx context.Context, engine, dir string) (string, error) {
	if engine == Postgres {
		d, err := postgresd.StartDetached(ctx, dir)
		if err != nil {
			return "", err
		}
		return d.DSN("postgres"), nil
	}
	d, err := mariadbd.StartDetached(ctx, dir)
	if err != nil {
		return "", err
	}
	return d.DSN(""), nil
}

// Driver is platformd's db.driver.
func (d DB) Driver() string { return d.Engine }

// PluginConfig is the database plugin's config for A.
func (d DB) PluginConfig() map[string]string {
	if d.Engine == SQLite {
		return map[string]string{"path": d.A}
	}
	return map[string]string{"dsn": d.DSN}
}

// newDB makes the lab's database A: a file for SQLite, else a database on
// the lab's own server (started here) or the operator's. On an error after
// the server started, the DB returned still names it, so that the caller
// can stop it.
func newDB(ctx context.Context, engine, dir string) (DB, error) {
	switch engine {
	case "", SQLite:
		a := filepath.Join(dir, "db", "a.sqlite")
		return DB{Engine: SQLite, A: a, B: filepath.Join(dir, "db", "b.sqlite"), DSN: a}, nil
	case Postgres, MySQL:
	default:
		return DB{}, fmt.Errorf("unknown database %q: sqlite, postgres or mysql", engine)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "upshift_lab_" + hex.EncodeToString(suffix)
	d := DB{Engine: engine, A: name + "_a", B: name + "_b", Admin: externalAdmin(engine)}
	if d.Admin == "" {
		// A server of the lab's own, like its HAProxy: hermetic, on a free
		// loopback port, gone with `lab down --purge`.
		d.Server = filepath.Join(dir, engine)
		var err error
		if d.Admin, err = startServer(ctx, engine, d.Server); err != nil {
			return d, fmt.Errorf("starting the lab's %s server: %w", engine, err)
		}
	}
	driver := map[string]string{Postgres: "pgx", MySQL: "mysql"}[engine]
	admin, err := sql.Open(driver, d.Admin)
	if err != nil {
		return d, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+d.A); err != nil {
		return d, fmt.Errorf("creating database %s on the %s server (%s): %w", d.A, engine, RedactDSN(d.Admin), err)
	}
	switch engine {
	case Postgres:
		u, err := url.Parse(d.Admin)
		if err != nil {
			return d, fmt.Errorf("the PostgreSQL admin DSN is not a URL: %w", err)
		}
		u.Path = "/" + d.A
		d.DSN = u.String()
	case MySQL:
		c, err := mysql.ParseDSN(d.Admin)
		if err != nil {
			return d, fmt.Errorf("the MySQL admin DSN does not parse: %w", err)
		}
		c.DBName = d.A
		d.DSN = c.FormatDSN()
	}
	return d, nil
}

// drop removes the lab's databases from a server it does not own (A and
// B, if B exists); the lab's own server goes with the lab's folder.
func (d DB) drop(ctx context.Context) error {
	if d.Engine == SQLite || d.Engine == "" || d.Server != "" || d.Admin == "" {
		return nil
	}
	driver := map[string]string{Postgres: "pgx", MySQL: "mysql"}[d.Engine]
	admin, err := sql.Open(driver, d.Admin)
	if err != nil {
		return err
	}
	defer admin.Close()
	for _, n := range []string{d.A, d.B} {
		q := "DROP DATABASE IF EXISTS " + n
		if d.Engine == Postgres {
			q += " WITH (FORCE)"
		}
		if _, err := admin.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("dropping %s: %w", n, err)
		}
	}
	return nil
}

// RedactDSN hides the password in a DSN shown to a person, in each form
// the lab writes: a URL (postgres://user:pw@host/db), go-sql-driver's
// user:pw@tcp(host)/db, and libpq's key=value with password=.
func RedactDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil {
			return u.Redacted()
		}
		return "(a DSN that does not parse)"
	}
	if kv := libpqPassword.ReplaceAllString(dsn, "${1}xxxxx"); kv != dsn {
		return kv
	}
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		if strings.Contains(dsn, "@") {
			return "(a DSN that does not parse)" // it may hold a password
		}
		return dsn
	}
	if c.Passwd != "" {
		// As the driver reads it: the address ends at the last '/', the
		// credentials at the last '@' before it, the user at the first ':'.
		slash := strings.LastIndexByte(dsn, '/')
		at := strings.LastIndexByte(dsn[:slash], '@')
		colon := strings.IndexByte(dsn[:at], ':')
		return dsn[:colon+1] + "xxxxx" + dsn[at:]
	}
	return dsn
}

var libpqPassword = regexp.MustCompile(`(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
