package lab

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

// Database engines the lab can put under its nodes.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	MySQL    = "mysql"
)

// Admin connections to the machine's servers, overridable for other setups.
func adminDSN(engine string) string {
	switch engine {
	case Postgres:
		if v := os.Getenv("UPSHIFT_LAB_POSTGRES"); v != "" {
			return v
		}
		return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	case MySQL:
		if v := os.Getenv("UPSHIFT_LAB_MYSQL"); v != "" {
			return v
		}
		return "root@tcp(127.0.0.1:3306)/"
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
	d := DB{Engine: engine, A: name + "_a", B: name + "_b"}
	driver := map[string]string{Postgres: "pgx", MySQL: "mysql"}[engine]
	admin, err := sql.Open(driver, adminDSN(engine))
	if err != nil {
		return DB{}, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+d.A); err != nil {
		return DB{}, fmt.Errorf("creating database %s on the local %s server (%s): %w", d.A, engine, RedactDSN(adminDSN(engine)), err)
	}
	switch engine {
	case Postgres:
		d.DSN = strings.Replace(adminDSN(engine), "/postgres?", "/"+d.A+"?", 1)
	case MySQL:
		d.DSN = adminDSN(engine) + d.A
	}
	return d, nil
}

// drop removes the lab's databases from a server (A and B, if B exists).
func (d DB) drop(ctx context.Context) error {
	if d.Engine == SQLite || d.Engine == "" {
		return nil
	}
	driver := map[string]string{Postgres: "pgx", MySQL: "mysql"}[d.Engine]
	admin, err := sql.Open(driver, adminDSN(d.Engine))
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

// RedactDSN hides a password in a URL-style DSN shown to a person.
func RedactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.Index(dsn[i+3:], "@"); at >= 0 {
			if c := strings.Index(dsn[i+3:i+3+at], ":"); c >= 0 {
				return dsn[:i+3+c+1] + "***" + dsn[i+3+at:]
			}
		}
	}
	return dsn
}
