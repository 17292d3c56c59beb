package nginxctl

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
)

// Server is one server of an upstream block. nginx entries have no names:
// Name comes from the plugin's `servers` map, or from the `# NAME` comment
// upshift writes after each line it renders.
type Server struct {
	Name string
	Addr string
	Down bool
}

// Upstream is one parsed upstream block inside the text of its file. Only
// the `down` flag of a server line is ever changed; every other line, and
// every other parameter of a server line, is written back as it was read.
type Upstream struct {
	Name    string
	Servers []Server
	// Balance is the block's load-balancing directive without its `;`
	// (`hash $cookie_session consistent`, `ip_hash`, `least_conn`, ...);
	// "" for nginx's default round robin.
	Balance string

	lines  []string
	lineOf []int     // index in lines of Servers[i]
	parsed []srvLine // the parts of Servers[i]'s line
}

type srvLine struct {
	indent, addr string
	params       []string // without down
	rest         string   // after the ';': a comment, usually
}

var (
	upstreamRE = regexp.MustCompile(`^\s*upstream\s+([^\s{]+)\s*\{\s*(#.*)?$`)
	closeRE    = regexp.MustCompile(`^\s*\}\s*(#.*)?$`)
	// One server directive per line: `server ADDR [PARAM ...];` and an
	// optional comment.
	serverRE   = regexp.MustCompile(`^(\s*)server\s+([^\s;#]+)((?:\s+[^\s;#]+)*)\s*;(\s*(?:#.*)?)$`)
	serverWord = regexp.MustCompile(`^\s*server\s`)
	balanceRE  = regexp.MustCompile(`^\s*((?:hash|ip_hash|sticky|least_conn|least_time|random)\b[^;#]*);`)
	cookieHash = regexp.MustCompile(`^hash\s+\$cookie_(\w+)(\s+consistent)?$`)
	nameRE     = regexp.MustCompile(`^\s*#\s*(\S+)`)
)

// ParseUpstream finds `upstream NAME { ... }` in text (the contents of
// path, which is only used in messages). Each server directive must sit on
// a line of its own.
func ParseUpstream(path string, text []byte, name string) (*Upstream, error) {
	u := &Upstream{Name: name, lines: strings.Split(string(text), "\n")}
	in, found := false, false
	var others []string
	for i, l := range u.lines {
		if !in {
			if m := upstreamRE.FindStringSubmatch(l); m != nil {
				if m[1] == name {
					if found {
						return nil, fmt.Errorf("upstream file %s: upstream %s is defined twice", path, name)
					}
					in, found = true, true
				} else {
					others = append(others, m[1])
				}
			}
			continue
		}
		if closeRE.MatchString(l) {
			in = false
			continue
		}
		m := serverRE.FindStringSubmatch(l)
		if b := balanceRE.FindStringSubmatch(l); m == nil && b != nil {
			u.Balance = strings.Join(strings.Fields(b[1]), " ")
			continue
		}
		if m == nil {
			if serverWord.MatchString(l) {
				return nil, fmt.Errorf("upstream file %s line %d: cannot read this server line (upshift needs one `server ADDR [PARAMS];` per line)", path, i+1)
			}
			continue
		}
		s := Server{Addr: m[2]}
		p := srvLine{indent: m[1], addr: m[2], rest: m[4]}
		for _, f := range strings.Fields(m[3]) {
			if f == "down" {
				s.Down = true
				continue
			}
			p.params = append(p.params, f)
		}
		if c := nameRE.FindStringSubmatch(m[4]); c != nil {
			s.Name = c[1]
		}
		for _, o := range u.Servers {
			if o.Addr == s.Addr {
				return nil, fmt.Errorf("upstream file %s: server %s is listed twice in upstream %s", path, s.Addr, name)
			}
		}
		u.Servers = append(u.Servers, s)
		u.lineOf = append(u.lineOf, i)
		u.parsed = append(u.parsed, p)
	}
	switch {
	case !found && len(others) > 0:
		return nil, fmt.Errorf("upstream file %s has no upstream %s (it has: %s)", path, name, strings.Join(others, ", "))
	case !found:
		return nil, fmt.Errorf("upstream file %s has no upstream %s", path, name)
	case in:
		return nil, fmt.Errorf("upstream file %s: upstream %s is not closed with }", path, name)
	case len(u.Servers) == 0:
		return nil, fmt.Errorf("upstream file %s: upstream %s has no server lines", path, name)
	}
	return u, nil
}

// Sticky reports whether the block keeps a client on one server (session
// affinity) and how: `hash $cookie_NAME` (open source: a cookie the
// platform sets), `sticky` (NGINX Plus) or `ip_hash` (the client's
// address).
func (u *Upstream) Sticky() (bool, string) {
	switch f := strings.Fields(u.Balance); {
	case cookieHash.MatchString(u.Balance):
		return true, u.Balance + " (the client's cookie " + cookieHash.FindStringSubmatch(u.Balance)[1] + ")"
	case len(f) > 0 && (f[0] == "sticky" || f[0] == "ip_hash"):
		return true, u.Balance
	case u.Balance == "":
		return false, "round robin"
	default:
		return false, u.Balance
	}
}

// Index returns the position of the server at addr in u.Servers, or -1.
func (u *Upstream) Index(addr string) int {
	for i, s := range u.Servers {
		if s.Addr == addr {
			return i
		}
	}
	return -1
}

// SetDown marks Servers[i] down (or not) and reports whether that changed
// anything.
func (u *Upstream) SetDown(i int, down bool) bool {
	if u.Servers[i].Down == down {
		return false
	}
	u.Servers[i].Down = down
	p := u.parsed[i]
	fields := append([]string{"server", p.addr}, p.params...)
	if down {
		fields = append(fields, "down")
	}
	u.lines[u.lineOf[i]] = p.indent + strings.Join(fields, " ") + ";" + p.rest
	return true
}

// Bytes is the file's text with the changes made.
func (u *Upstream) Bytes() []byte { return []byte(strings.Join(u.lines, "\n")) }

// ReadUpstream reads the first upstream block of the file at path (the
// block the lab and Start write), naming each server by its `# NAME`
// comment, or by its address when it has none.
func ReadUpstream(path string) ([]Server, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream file %s: %w", path, fsutil.UnwrapPath(err))
	}
	name := ""
	for _, l := range strings.Split(string(b), "\n") {
		if m := upstreamRE.FindStringSubmatch(l); m != nil {
			name = m[1]
			break
		}
	}
	if name == "" {
		return nil, fmt.Errorf("upstream file %s has no upstream block", path)
	}
	u, err := ParseUpstream(path, b, name)
	if err != nil {
		return nil, err
	}
	out := append([]Server(nil), u.Servers...)
	for i := range out {
		if out[i].Name == "" {
			out[i].Name = out[i].Addr
		}
	}
	return out, nil
}

// RenderUpstream is an upstream block for servers, one line each, named in
// a trailing comment. max_fails/fail_timeout make nginx's passive check
// skip a server that refuses connections for a moment rather than try it
// on every request.
func RenderUpstream(name string, servers []Server) string {
	return RenderUpstreamBalanced(name, servers, "")
}

// RenderUpstreamBalanced is RenderUpstream with a load-balancing
// directive (without its `;`) first in the block: "hash
// $cookie_session consistent" for session affinity.
func RenderUpstreamBalanced(name string, servers []Server, balance string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by upshift: one server per line; `down` takes a server out of rotation.\nupstream %s {\n", name)
	if balance != "" {
		fmt.Fprintf(&b, "    %s;\n", balance)
	}
	for _, s := range servers {
		down := ""
		if s.Down {
			down = " down"
		}
		fmt.Fprintf(&b, "    server %s max_fails=1 fail_timeout=2s%s; # %s\n", s.Addr, down, s.Name)
	}
	b.WriteString("}\n")
	return b.String()
}
