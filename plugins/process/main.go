// Command upshift-plugin-process is the node_pool plugin for nodes that are
// local processes: it starts them detached with a pid file, stops them
// gracefully, edits their JSON config file, drops marker files in their data
// folder, runs their commands and talks to their HTTP admin and health
// endpoints. The demo lab's platformd nodes are driven by it.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
