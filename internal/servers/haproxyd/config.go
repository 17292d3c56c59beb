package haproxyd

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// ServerHeader is the response header naming the server that answered
// (or failed to).
const ServerHeader = "X-Upshift-Server"

// Server is one backend server: the name HAProxy (and the runtime API) knows
// it by and its host:port.
type Server struct {
	Name string
	Addr string
}

// Config describes the HAProxy to run: one frontend on a loopback port in
// front of one backend. Zero values get the defaults documented per field.
type Config struct {
	// Servers of the backend, in order. At least one.
	Servers []Server
	// Backend is the backend's name. Default "app".
	Backend string
	// Bind is the frontend's host:port. Default: a free loopback port.
	Bind string
	// Dir holds the config, admin socket, pidfile, state file and log.
	// Default: a fresh temporary directory, removed by Stop.
	Dir string
	// Binary is the haproxy executable. Default: "haproxy" on PATH, else
	// /usr/sbin/haproxy.
	Binary string
	// HealthPath is the path of the HTTP health check. Default "/healthz".
	HealthPath string
	// CheckInter is the health-check interval. Default 500ms.
	CheckInter time.Duration
	// Fall and Rise are the consecutive failed/successful checks that mark a
	// server down/up. Default 2 each.
	Fall, Rise int
	// Cookie, when set, turns session affinity on: HAProxy inserts a
	// cookie of this name naming the server that answered (`cookie NAME
	// insert indirect nocache`, and `cookie SERVER` on each server line),
	// and sends the client's next requests to that server while it is
	// ready or draining.
	Cookie string
	// HardStopAfter bounds how long an old worker keeps serving its
	// in-flight connections after a reload or soft stop. Default 30s.
	HardStopAfter time.Duration
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Backend == "" {
		out.Backend = "app"
	}
	if out.HealthPath == "" {
		out.HealthPath = "/healthz"
	}
	if out.CheckInter == 0 {
		out.CheckInter = 500 * time.Millisecond
	}
	if out.Fall == 0 {
		out.Fall = 2
	}
	if out.Rise == 0 {
		out.Rise = 2
	}
	if out.HardStopAfter == 0 {
		out.HardStopAfter = 30 * time.Second
	}
	return out
}

func (c *Config) validate() error {
	if len(c.Servers) == 0 {
		return fmt.Errorf("haproxyd: no servers")
	}
	if !runtimeapi.ValidName(c.Backend) {
		return fmt.Errorf("haproxyd: backend name %q: only letters, digits and _.:- are allowed", c.Backend)
	}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if !runtimeapi.ValidName(s.Name) {
			return fmt.Errorf("haproxyd: server name %q: only letters, digits and _.:- are allowed", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("haproxyd: server %q listed twice", s.Name)
		}
		seen[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			return fmt.Errorf("haproxyd: server %s address %q: %v", s.Name, s.Addr, err)
		}
	}
	if c.Cookie != "" && !runtimeapi.ValidName(c.Cookie) {
		return fmt.Errorf("haproxyd: cookie name %q: only letters, digits and _.:- are allowed", c.Cookie)
	}
	if strings.ContainsAny(c.HealthPath, " \t\n") || !strings.HasPrefix(c.HealthPath, "/") {
		return fmt.Errorf("haproxyd: health path %q must start with / and hold no spaces", c.HealthPath)
	}
	if strings.ContainsAny(c.Dir, " \t\n") {
		// HAProxy's config syntax would need quoting; temp dirs never need it.
		return fmt.Errorf("haproxyd: directory %q holds whitespace", c.Dir)
	}
	return nil
}

// Paths of the files an instance keeps in its directory.
const (
	configFile       = "haproxy.cfg"
	socketFile       = "admin.sock"
	masterSocketFile = "master.sock"
	stateFile        = "server-state"
	pidFile          = "haproxy.pid"
	logFile          = "haproxy.log"
)

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// Render returns the HAProxy configuration for c, with its files in dir and
// the frontend on bind. The settings are the ones upshift's drain relies on:
// an admin-level stats socket, health checks that decide UP/DOWN on their
// own, retries with redispatch so a refused connection goes to another
// server, and a server-state file so runtime state survives a reload.
func Render(c Config, dir, bind string) (string, error) {
	c = c.withDefaults()
	c.Dir = dir
	if err := c.validate(); err != nil {
		return "", err
	}
	if _, _, err := net.SplitHostPort(bind); err != nil {
		return "", fmt.Errorf("haproxyd: bind %q: %v", bind, err)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by upshift haproxyd; regenerated on every start.")
	w("global")
	w("    stats socket %s mode 600 level admin expose-fd listeners", filepath.Join(dir, socketFile))
	w("    stats timeout 30s")
	w("    server-state-file %s", filepath.Join(dir, stateFile))
	w("    pidfile %s", filepath.Join(dir, pidFile))
	w("    hard-stop-after %s", ms(c.HardStopAfter))
	w("    maxconn 4096")
	w("")
	w("defaults")
	w("    mode http")
	w("    timeout connect 1s")
	w("    timeout client 30s")
	w("    timeout server 30s")
	w("    timeout http-request 10s")
	w("    timeout http-keep-alive 5s")
	w("    timeout queue 10s")
	w("    timeout check 1s")
	w("    retries 3")
	w("    option redispatch")
	w("    load-server-state-from-file global")
	w("")
	w("frontend fe")
	w("    bind %s", bind)
	// Names the server on every answer, HAProxy's own errors (502, 503)
	// included, which carry no header of the backend's: a traffic check can
	// then say which node a failed request was on.
	w("    http-after-response set-header %s %%[srv_name] if { srv_name -m found }", ServerHeader)
	w("    default_backend %s", c.Backend)
	w("")
	w("backend %s", c.Backend)
	w("    balance roundrobin")
	w("    option httpchk GET %s", c.HealthPath)
	w("    http-check expect status 200")
	w("    default-server inter %s fall %d rise %d", ms(c.CheckInter), c.Fall, c.Rise)
	cookie := func(string) string { return "" }
	if c.Cookie != "" {
		// indirect: the cookie is HAProxy's, not passed to the server;
		// nocache: a shared cache must not hand one client's cookie to
		// another.
		w("    cookie %s insert indirect nocache", c.Cookie)
		cookie = func(name string) string { return " cookie " + name }
	}
	for _, s := range c.Servers {
		w("    server %s %s check%s", s.Name, s.Addr, cookie(s.Name))
	}
	return b.String(), nil
}
