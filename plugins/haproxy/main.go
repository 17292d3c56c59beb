// Command upshift-plugin-haproxy is upshift's load_balancer plugin for
// HAProxy: it drains, enables and reports the servers of one backend
// through HAProxy's runtime API (the admin socket), waiting for in-flight
// requests before a server leaves rotation and for HAProxy's own health
// check before it rejoins. The vendor logic is LB (lb.go); plugin.go binds
// it to the SDK; haproxyd runs a real HAProxy for tests and the demo lab.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
