// Command upshift-plugin-mysql is the database plugin for MariaDB and MySQL
// (go-sql-driver/mysql): consistent dumps with --single-transaction, copies
// A -> B by dump and restore, guarded drops.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
