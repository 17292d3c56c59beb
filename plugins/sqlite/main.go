// Command upshift-plugin-sqlite is the database plugin for SQLite files (the
// reference platform's embedded default): consistent backups and copies
// made by copying A's files under SQLite's write lock (or, where that cannot
// be shown safe, with the online backup API), guarded drops, the cluster
// lock, and a check.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
