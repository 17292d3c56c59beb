package nodekit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Node is one node of a pool, as the playbook's nodes list describes it
// (the attributes docs/plugins/process.md names). Paths are on the node's
// host; the URLs are asked from the plugin's.
type Node struct {
	Name           string
	Address        string
	ConfigFile     string
	DataDir        string
	Command        []string
	PidFile        string
	LogFile        string
	HealthURL      string
	ReadOnlyURL    string
	MigrateCommand []string
	// AdminSocket is the unix socket of the node's admin API (the
	// admin_socket attribute; <data_dir>/admin.sock when the node gives
	// neither it nor read_only_url). Admin requests go there when set.
	AdminSocket string
	// AdminTokenFile is a file on the plugin's host holding the node's
	// admin token (the admin_token_file attribute), sent as a bearer
	// token with every admin request. The token itself is never held in
	// a Node, a playbook value or a message.
	AdminTokenFile string
}

// Base returns n itself: a vendor's node type that embeds Node satisfies
// Member through it.
func (n *Node) Base() *Node { return n }

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

// FromValue reads one node of a node_pool's nodes list, with the health and
// read-only URLs defaulting from the address. readOnlyPath is the admin path
// used when the node gives no read_only_url; extra names further required
// attributes (the ssh plugin's host).
func FromValue(v cty.Value, readOnlyPath string, extra ...string) (*Node, error) {
	n := &Node{
		Name: Attr(v, "name"), Address: Attr(v, "address"), ConfigFile: Attr(v, "config_file"), DataDir: Attr(v, "data_dir"),
		PidFile: Attr(v, "pid_file"), LogFile: Attr(v, "log_file"), HealthURL: Attr(v, "health_url"), ReadOnlyURL: Attr(v, "read_only_url"),
		Command: Strings(v, "command"), AdminSocket: Attr(v, "admin_socket"), AdminTokenFile: Attr(v, "admin_token_file"),
	}
	if n.HealthURL == "" && n.Address != "" {
		n.HealthURL = "http://" + n.Address + "/healthz"
	}
	if n.ReadOnlyURL != "" && n.AdminSocket != "" {
		return nil, fmt.Errorf("node %q: give read_only_url (a TCP admin listener) or admin_socket (a unix socket), not both", n.Name)
	}
	n.adminDefaults(readOnlyPath)
	required := requiredStrings(extra)
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

// InDataDir is rel inside the node's data folder; a path that is empty,
// absolute or leaves the folder is an error. Node paths are slash paths
// (Linux hosts), local or remote.
func (n *Node) InDataDir(rel string) (string, error) {
	if rel == "" || path.IsAbs(rel) {
		return "", fmt.Errorf("path %q must be relative to the data folder", rel)
	}
	p := path.Join(n.DataDir, rel)
	if p == path.Clean(n.DataDir) || !strings.HasPrefix(p, strings.TrimSuffix(path.Clean(n.DataDir), "/")+"/") {
		return "", fmt.Errorf("path %q leaves the data folder %s", rel, n.DataDir)
	}
	return p, nil
}

// httpClient has a deadline on every call; callers add their own context.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// SetReadOnly asks the node's admin endpoint for read-only mode on or off,
// and verifies the answer. The request is JSON, with the node's admin
// token when it has one (see admin.go).
func (n *Node) SetReadOnly(ctx context.Context, enabled bool) error {
	body, _ := json.Marshal(map[string]bool{"enabled": enabled})
	at := n.adminEndpoint()
	resp, err := n.adminRequest(ctx, http.MethodPost, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("read-only request to %s: %w", at, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read-only request to %s: %s: %s%s", at, resp.Status, strings.TrimSpace(string(b)), n.adminRefused(resp))
	}
	var got struct {
		ReadOnly *bool `json:"read_only"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.ReadOnly == nil || *got.ReadOnly != enabled {
		return fmt.Errorf("read-only request to %s: the node answered %s, not read_only=%t", at, strings.TrimSpace(string(b)), enabled)
	}
	return nil
}

// LastLines is the last n lines of s joined with " | ", for an error
// message quoting a command's output.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ErrNoCommand and ErrBothCommands are exec's argument mistakes.
var (
	ErrNoCommand    = errors.New("give the command as an argument list, or a shell line in shell")
	ErrBothCommands = errors.New("give either command or shell, not both")
)
