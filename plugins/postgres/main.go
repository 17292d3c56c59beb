// Command upshift-plugin-postgres is the database plugin for PostgreSQL
// (jackc/pgx): pg_dump backups verified with pg_restore, copies A -> B by
// template when nothing holds A and by dump and restore otherwise,
// database-level read-only mode, guarded drops.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
