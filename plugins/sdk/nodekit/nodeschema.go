package nodekit

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// NodeSchema is what FromValue reads from a node object, followed by extra
// (a plugin's own attributes, such as the ssh plugin's host): the
// description a node_pool plugin gives as sdk.Plugin.Node, so that
// `upshift validate` reports a node the plugin would refuse at run time,
// on the line of the variables file that defines it.
func NodeSchema(extra ...*schema.Attribute) *schema.Object {
	str := func(name string, required bool, desc string) *schema.Attribute {
		return &schema.Attribute{Name: name, Type: cty.String, Required: required, Description: desc}
	}
	o := &schema.Object{Attributes: []*schema.Attribute{
		str("name", true, "The node's name, as the load balancer knows the server."),
		str("address", true, "host:port the node serves HTTP on."),
		str("config_file", true, "The node's configuration file (JSON), which set_config edits."),
		str("data_dir", true, "The node's data folder (markers, backups of it, generated files)."),
		str("pid_file", true, "The file holding the node's process id; a node started by hand must write it."),
		str("log_file", true, "Where the node's output goes when the plugin starts it."),
		{Name: "command", Type: cty.List(cty.String), Required: true, Description: "The node's start command, as an argument list."},
		str("health_url", false, "Health check URL; default http://<address>/healthz."),
		str("read_only_url", false, "The admin endpoint for read-only mode over TCP; default the node's admin socket."),
		str("admin_socket", false, "The node's admin API unix socket; default <data_dir>/admin.sock."),
		str("admin_token_file", false, "File holding the bearer token of the node's admin API."),
	}}
	o.Attributes = append(o.Attributes, extra...)
	return o
}

// requiredStrings are the string attributes NodeSchema(extra...) requires
// besides name, in its order: what FromValue refuses a node without.
func requiredStrings(extra []string) []string {
	var out []string
	for _, a := range NodeSchema().Attributes {
		if a.Required && a.Type == cty.String && a.Name != "name" {
			out = append(out, a.Name)
		}
	}
	return append(out, extra...)
}
