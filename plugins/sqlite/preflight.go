package main

import (
	"context"
	"fmt"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// What preflight asks of SQLite: the database's size.
var _ dbkit.Sizer = (*db)(nil)

// Size is A's size as SQLite sees it (pages times page size), not the
// main file's: in WAL mode, committed rows may still be only in the -wal
// file until a checkpoint, and a backup (one file, the WAL checkpointed into
// it) holds them too.
func (d *db) Size(ctx context.Context) (int64, error) {
	c, err := open(d.path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	if err := c.QueryRowContext(ctx, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").Scan(&n); err != nil {
		return 0, fmt.Errorf("database %s: %w", d.path, err)
	}
	return n, nil
}
