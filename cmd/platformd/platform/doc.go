// Package platform is the reference platform that upshift upgrades: one
// platformd node. It owns the node's config file format, its database schema
// (versions 1 and 2 on SQLite, PostgreSQL and MySQL/MariaDB), the migration
// from version 1 to 2 of a database and a data folder, the HTTP API (reads,
// writes, full read-only mode, health) and the node's start-up rules (schema
// checks and the rolling-upgrade marker).
//
// Its behaviour is a contract for the demo lab and the end-to-end tests; see
// cmd/platformd/README.md.
package platform
