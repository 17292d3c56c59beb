// Command upshift-plugin-nginx is the load_balancer plugin for nginx: the
// upstream is a file upshift manages; drain marks a server down, reloads
// gracefully after `nginx -t`, and waits until the old workers have
// finished their in-flight requests; enable brings it back once it answers
// its health check.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
