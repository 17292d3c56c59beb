// Command upshift-plugin-testkit is a node_pool plugin for the runner's
// tests and benchmarks, written with the SDK. It implements the node_pool
// contract trivially (node state kept in memory, nothing executed) and adds
// actions that behave in controlled ways: noop, sleep, flaky, fail, crash,
// record and echo. Files it keeps (flaky counters, the record log, markers)
// live under the state_dir config attribute, so they survive a restart of
// the plugin process.
package main

import (
	"os"

	"github.com/upshift-dev/upshift/plugins/sdk"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0"

func main() {
	sdk.Serve(newKit(os.Exit).plugin())
}
