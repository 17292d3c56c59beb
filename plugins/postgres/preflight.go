package main

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// What preflight asks of PostgreSQL: A's size, and whether the role may
// do what docs/plugins/postgres.md says backup and copy need.
var (
	_ dbkit.Sizer            = (*pg)(nil)
	_ dbkit.PrivilegeChecker = (*pg)(nil)
)

func (d *pg) Size(ctx context.Context) (int64, error) {
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var n int64
	err = c.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	return n, err
}

func (d *pg) MissingPrivileges(ctx context.Context) ([]string, error) {
	c, err := d.connect(ctx, d.cfg.Database)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	var role, owner string
	var super, createdb bool
	err = c.QueryRow(ctx, `SELECT current_user, r.rolsuper, r.rolcreatedb, pg_get_userbyid(d.datdba)
		FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`).Scan(&role, &super, &createdb, &owner)
	if err != nil {
		return nil, err
	}
	if super {
		return nil, nil
	}
	var missing []string
	if !createdb {
		missing = append(missing, fmt.Sprintf("role %q may not create databases, which copy does: ALTER ROLE %s CREATEDB", role, sqlName(role)))
	}
	if owner != role {
		missing = append(missing, fmt.Sprintf("role %q does not own %s (%q does), so copy cannot use it as a template nor dump every table: ALTER DATABASE %s OWNER TO %s", role, d.where(d.cfg.Database), owner, sqlName(d.cfg.Database), sqlName(role)))
	}
	return missing, nil
}

var plainName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// sqlName is name as a statement the operator runs must spell it: as it is
// when PostgreSQL would read it back unchanged, else double-quoted (a
// role "App-Owner" written bare would be app-owner, or a syntax error).
func sqlName(name string) string {
	if plainName.MatchString(name) {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}
