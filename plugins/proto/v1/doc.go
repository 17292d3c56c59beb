// Package pluginv1 owns the wire protocol between upshift and its plugin
// processes: upshift.proto and the Go code generated from it (regenerate with
// plugins/proto/generate.sh, or `make proto`). Hand-written adapters between
// these messages and package plugins live in plugins/sdk.
package pluginv1
