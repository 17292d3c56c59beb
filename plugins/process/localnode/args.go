package localnode

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Attr reads a string attribute of an object value, "" when absent or null.
func Attr(v cty.Value, name string) string {
	if v.IsNull() || !v.Type().IsObjectType() || !v.Type().HasAttribute(name) {
		return ""
	}
	a := v.GetAttr(name)
	if a.IsNull() || !a.IsKnown() {
		return ""
	}
	s, err := convert.Convert(a, cty.String)
	if err != nil {
		return ""
	}
	return s.AsString()
}

// Strings reads a list-of-strings attribute, nil when absent or null.
func Strings(v cty.Value, name string) []string {
	if v.IsNull() || !v.Type().IsObjectType() || !v.Type().HasAttribute(name) || v.GetAttr(name).IsNull() {
		return nil
	}
	l, err := convert.Convert(v.GetAttr(name), cty.List(cty.String))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range l.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

// FromValue reads one node of a node_pool's nodes list: the attributes the
// process contract names (see docs/plugins/process.md), with the health and
// read-only URLs defaulting from the address. readOnlyPath is the admin path
// used when the node gives no read_only_url; extra names further required
// attributes (the ssh plugin's host).
func FromValue(v cty.Value, readOnlyPath string, extra ...string) (*Node, error) {
	n := &Node{
		Name: Attr(v, "name"), Address: Attr(v, "address"), ConfigFile: Attr(v, "config_file"), DataDir: Attr(v, "data_dir"),
		PidFile: Attr(v, "pid_file"), LogFile: Attr(v, "log_file"), HealthURL: Attr(v, "health_url"), ReadOnlyURL: Attr(v, "read_only_url"),
		Command: Strings(v, "command"),
	}
	if n.HealthURL == "" && n.Address != "" {
		n.HealthURL = "http://" + n.Address + "/healthz"
	}
	if n.ReadOnlyURL == "" && n.Address != "" {
		n.ReadOnlyURL = "http://" + n.Address + readOnlyPath
	}
	required := append([]string{"address", "config_file", "data_dir", "pid_file", "log_file"}, extra...)
	var missing []string
	for _, a := range required {
		if Attr(v, a) == "" {
			missing = append(missing, a)
		}
	}
	if len(n.Command) == 0 {
		missing = append(missing, "command")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("node %q has no %s; a node needs name, %s and command", n.Name, strings.Join(missing, ", "), strings.Join(required, ", "))
	}
	return n, nil
}

// ErrNoCommand and ErrBothCommands are exec's argument mistakes.
var (
	ErrNoCommand    = errors.New("give the command as an argument list, or a shell line in shell")
	ErrBothCommands = errors.New("give either command or shell, not both")
)

// ExecArgs reads exec's arguments: exactly one of an argument vector or a
// shell line, and extra environment variables. The error says which
// argument is wrong: "command" or "shell".
func ExecArgs(args cty.Value) (argv []string, shell string, env map[string]string, badAttr string, err error) {
	argv, shell = Strings(args, "command"), Attr(args, "shell")
	switch {
	case len(argv) == 0 && shell == "":
		return nil, "", nil, "command", ErrNoCommand
	case len(argv) > 0 && shell != "":
		return nil, "", nil, "shell", ErrBothCommands
	}
	env = map[string]string{}
	if e := args.GetAttr("env"); !e.IsNull() {
		for k, v := range e.AsValueMap() {
			env[k] = v.AsString()
		}
	}
	return argv, shell, env, "", nil
}
