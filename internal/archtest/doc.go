// Package archtest checks the import layering that docs/architecture.md
// draws, so that a shortcut across stages fails `make test` instead of
// waiting for a reviewer: vendor plugins never link test servers, the core
// packages link no vendor and nothing under internal/, the graph, journal and
// wire packages import nothing of the project, and the upshift binary links
// test servers only through the lab.
package archtest
