package main

import (
	"context"
	"os"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// What preflight asks of SQLite: the database file's size.
var _ dbkit.Sizer = (*db)(nil)

func (d *db) Size(context.Context) (int64, error) {
	fi, err := os.Stat(d.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
