// Command upshift-plugin-nginx is upshift's load_balancer plugin for nginx.
// The upstream block lives in a file upshift edits: drain marks a server
// `down`, checks the whole configuration with `nginx -t`, reloads nginx
// gracefully and waits until the workers of the previous configuration have
// finished their in-flight requests; enable waits until the server answers
// its health URL (open-source nginx has no active health checks), then puts
// it back the same way. The vendor logic is LB (lb.go); plugin.go binds it
// to the SDK; nginxd runs a real nginx for tests and the demo lab.
package main

import "github.com/upshift-dev/upshift/plugins/sdk"

func main() { sdk.Serve(newPlugin()) }
