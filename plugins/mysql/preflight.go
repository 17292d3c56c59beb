package main

import (
	"context"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// What preflight asks of MariaDB/MySQL: A's size (data and indexes).
var _ dbkit.Sizer = (*my)(nil)

func (d *my) Size(ctx context.Context) (int64, error) {
	c, err := d.open(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	err = c.QueryRowContext(ctx, "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = ?", d.cfg.DBName).Scan(&n)
	return n, err
}
