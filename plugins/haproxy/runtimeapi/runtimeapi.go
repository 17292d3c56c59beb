// Package runtimeapi is the haproxy plugin's client of HAProxy's runtime
// API over the admin socket: show stat, set server state, show servers
// state, info, and saving server state for a reload.
package runtimeapi

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// Client speaks HAProxy's runtime API over the admin socket, one command per
// connection (non-interactive mode: write the command, read to EOF).
type Client struct {
	// Socket is the admin socket's path.
	Socket string
	// Timeout bounds each command, connect to last byte. Default 5s.
	Timeout time.Duration
}

// NewClient returns a client of the admin socket at path.
func NewClient(path string, timeout time.Duration) *Client {
	return &Client{Socket: path, Timeout: timeout}
}

// SocketError is a failure to reach the admin socket (as opposed to HAProxy
// refusing a command). Its message is one line naming the socket.
type SocketError struct {
	Socket string
	Err    error
}

func (e *SocketError) Error() string {
	return fmt.Sprintf("HAProxy admin socket %s: %v", e.Socket, e.Err)
}

func (e *SocketError) Unwrap() error { return e.Err }

// CommandError is HAProxy refusing a command; Reply is its (first) line.
type CommandError struct {
	Command string
	Reply   string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("HAProxy refused %q: %s", e.Command, e.Reply)
}

// Do sends one command and returns HAProxy's whole reply.
func (c *Client) Do(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, "\n;") {
		// One command per call: a newline or ';' would chain others.
		return "", fmt.Errorf("haproxyd: command %q holds a newline or ';'", command)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return "", &SocketError{Socket: c.Socket, Err: rootCause(err)}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", &SocketError{Socket: c.Socket, Err: rootCause(err)}
	}
	// Half-close: the admin socket closes after one command anyway, the
	// master CLI only once it sees the end of input.
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no complete reply to %q within %s", command, timeout)
		}
		return "", &SocketError{Socket: c.Socket, Err: rootCause(err)}
	}
	return string(b), nil
}

// rootCause strips net's "dial unix /path:" prefix, which would name the
// socket twice.
func rootCause(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Stat is one row of `show stat`, by header name (pxname, svname, status,
// scur, qcur, check_status, ...).
type Stat map[string]string

// Int returns a numeric field, 0 when empty or not a number.
func (s Stat) Int(field string) int {
	n, _ := strconv.Atoi(s[field])
	return n
}

// IsServer reports whether the row is a server (not the FRONTEND or BACKEND
// aggregate of its proxy).
func (s Stat) IsServer() bool {
	return s["svname"] != "FRONTEND" && s["svname"] != "BACKEND"
}

// Counters reads the row's traffic counters: responses by class
// (hrsp_*), connection and response errors (econ, eresp), retries (wretr),
// redispatches (wredis) and current sessions (scur). HAProxy counts HTTP
// requests per backend (req_tot) but not per server, where the responses
// are summed.
func (s Stat) Counters() lbkit.Counters {
	c := lbkit.Counters{
		ConnectionErrors: int64(s.Int("econ")),
		ResponseErrors:   int64(s.Int("eresp")),
		Retries:          int64(s.Int("wretr")),
		Redispatches:     int64(s.Int("wredis")),
		Sessions:         int64(s.Int("scur")),
	}
	var answered int64
	for i := range c.HTTP {
		c.HTTP[i] = int64(s.Int(fmt.Sprintf("hrsp_%dxx", i+1)))
		answered += c.HTTP[i]
	}
	c.Requests = int64(s.Int("req_tot"))
	if other := answered + int64(s.Int("hrsp_other")); c.Requests < other {
		c.Requests = other
	}
	return c
}

// ShowStat runs `show stat` and parses its CSV by header name.
func (c *Client) ShowStat(ctx context.Context) ([]Stat, error) {
	out, err := c.Do(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return ParseStat(out)
}

// ParseStat parses `show stat` output: a "# " header line then CSV rows.
func ParseStat(out string) ([]Stat, error) {
	if !strings.HasPrefix(out, "# ") {
		return nil, &CommandError{Command: "show stat", Reply: FirstLines(out, 1)}
	}
	r := csv.NewReader(strings.NewReader(out[2:]))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("haproxyd: parsing show stat: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("haproxyd: show stat: no header")
	}
	head := recs[0]
	rows := make([]Stat, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		row := Stat{}
		for j, v := range rec {
			if j < len(head) && head[j] != "" {
				row[head[j]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Servers returns the `show stat` rows of backend's servers, in config
// order, and whether the backend exists at all.
func (c *Client) Servers(ctx context.Context, backend string) ([]Stat, bool, error) {
	servers, total, err := c.Backend(ctx, backend)
	return servers, total != nil, err
}

// Backend returns the `show stat` rows of backend's servers, in config
// order, and the backend's own row (nil when there is no such backend),
// which also counts the requests no server took.
func (c *Client) Backend(ctx context.Context, backend string) (servers []Stat, total Stat, err error) {
	rows, err := c.ShowStat(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range rows {
		if r["pxname"] != backend {
			continue
		}
		if r["svname"] == "BACKEND" {
			total = r
		}
		if r.IsServer() {
			servers = append(servers, r)
		}
	}
	return servers, total, nil
}

// Backends returns the names of all backends.
func (c *Client) Backends(ctx context.Context) ([]string, error) {
	rows, err := c.ShowStat(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		if r["svname"] == "BACKEND" {
			out = append(out, r["pxname"])
		}
	}
	return out, nil
}

// AdminState is a server's administrative state as `set server ... state`
// sets it.
type AdminState string

// The administrative states.
const (
	StateReady AdminState = "ready"
	StateDrain AdminState = "drain"
	StateMaint AdminState = "maint"
)

// SetServerState runs `set server <backend>/<server> state <state>`.
func (c *Client) SetServerState(ctx context.Context, backend, server string, state AdminState) error {
	switch state {
	case StateReady, StateDrain, StateMaint:
	default:
		return fmt.Errorf("haproxyd: unknown server state %q", state)
	}
	if !ValidName(backend) || !ValidName(server) {
		return fmt.Errorf("haproxyd: bad backend/server name %q/%q", backend, server)
	}
	cmd := fmt.Sprintf("set server %s/%s state %s", backend, server, state)
	out, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	// Success is an empty reply; anything else is HAProxy saying why not.
	if s := strings.TrimSpace(out); s != "" {
		return &CommandError{Command: cmd, Reply: FirstLines(s, 1)}
	}
	return nil
}

// Info runs `show info` and returns its "Name: value" lines as a map.
func (c *Client) Info(ctx context.Context) (map[string]string, error) {
	out, err := c.Do(ctx, "show info")
	if err != nil {
		return nil, err
	}
	info := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			info[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if info["Pid"] == "" {
		return nil, &CommandError{Command: "show info", Reply: FirstLines(out, 1)}
	}
	return info, nil
}

// ShowServersState runs `show servers state [backend]` and returns the raw
// reply, which is exactly the server-state file format.
func (c *Client) ShowServersState(ctx context.Context, backend string) (string, error) {
	cmd := "show servers state"
	if backend != "" {
		if !ValidName(backend) {
			return "", fmt.Errorf("haproxyd: bad backend name %q", backend)
		}
		cmd += " " + backend
	}
	out, err := c.Do(ctx, cmd)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(out, "1\n") {
		return "", &CommandError{Command: cmd, Reply: FirstLines(out, 1)}
	}
	return out, nil
}

// ServerState is one line of `show servers state`.
type ServerState struct {
	Backend    string
	Name       string
	Addr       string
	OpState    int // 0 stopped, 1 starting, 2 running, 3 stopping
	AdminState int // bit field: 0x01 forced maint, 0x08 forced drain, ...
	Fields     map[string]string
}

// Admin-state bits of `show servers state` (srv_admin_state).
const (
	AdminForcedMaint     = 0x01
	AdminInheritedMaint  = 0x02
	AdminConfigMaint     = 0x04
	AdminForcedDrain     = 0x08
	AdminInheritedDrain  = 0x10
	AdminResolutionMaint = 0x20
	AdminHostnameMaint   = 0x40
)

// InMaint reports whether any maintenance bit is set.
func (s ServerState) InMaint() bool {
	return s.AdminState&(AdminForcedMaint|AdminInheritedMaint|AdminConfigMaint|AdminResolutionMaint|AdminHostnameMaint) != 0
}

// InDrain reports whether a drain bit is set.
func (s ServerState) InDrain() bool {
	return s.AdminState&(AdminForcedDrain|AdminInheritedDrain) != 0
}

// ServersState runs and parses `show servers state [backend]`.
func (c *Client) ServersState(ctx context.Context, backend string) ([]ServerState, error) {
	out, err := c.ShowServersState(ctx, backend)
	if err != nil {
		return nil, err
	}
	return ParseServersState(out)
}

// ParseServersState parses the server-state format: a version line "1", a
// "# field ..." header, then space-separated rows.
func ParseServersState(out string) ([]ServerState, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || lines[0] != "1" || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("haproxyd: unexpected server state format: %s", FirstLines(out, 2))
	}
	head := strings.Fields(lines[1][2:])
	var out2 []ServerState
	for _, line := range lines[2:] {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		m := map[string]string{}
		for j, v := range f {
			if j < len(head) {
				m[head[j]] = v
			}
		}
		op, _ := strconv.Atoi(m["srv_op_state"])
		adm, _ := strconv.Atoi(m["srv_admin_state"])
		out2 = append(out2, ServerState{
			Backend: m["be_name"], Name: m["srv_name"], Addr: m["srv_addr"],
			OpState: op, AdminState: adm, Fields: m,
		})
	}
	return out2, nil
}

// SaveServerState writes `show servers state` (all backends) to path,
// atomically, in the format `server-state-file` loads.
func (c *Client) SaveServerState(ctx context.Context, path string) error {
	out, err := c.ShowServersState(ctx, "")
	if err != nil {
		return err
	}
	// HAProxy reads it as its own user; a new file is private to it.
	if err := fsutil.WriteFile(path, []byte(out), 0o600); err != nil {
		return fmt.Errorf("saving the server state: %w", err)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// ValidName reports whether s can be a backend or server name in a runtime
// API command: letters, digits and _.:- only, so no name can inject another
// command.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// FirstLines keeps the first n lines of a reply for an error message, joined
// with " | ", saying how many more there were.
func FirstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "... ("+strconv.Itoa(len(lines)-n)+" more lines)")
	}
	return strings.Join(lines, " | ")
}
