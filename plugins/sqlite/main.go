// Command upshift-plugin-sqlite is the database plugin for SQLite files (the
// reference platform's embedded default): consistent online backups and
// copies with VACUUM INTO, guarded drops, and a check.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
