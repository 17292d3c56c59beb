package nginxctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// LogFormat is the access-log format the metrics action reads: nginx open
// source keeps no traffic counters of its own, so they are counted from
// each request's line. The operator adds it to nginx's http block and logs
// the proxying server with it (`access_log PATH upshift;`).
const LogFormat = `log_format upshift '$remote_addr [$time_local] "$request" $status upstream=$upstream_addr upstream_status=$upstream_status $request_time';`

// logLine matches the end of a line in LogFormat. The request sits in
// quotes (nginx escapes a quote inside it as \x22), so the closing quote
// and what follows can be found from the end whatever the request holds.
var logLine = regexp.MustCompile(`" (\d{3}) upstream=([^=]*) upstream_status=([^=]*) [0-9.]+$`)

// AccessLog counts the lines nginx appends to the access log, from where
// the log was when the plugin first looked (counters start at zero then)
// and across a rotation (a new file, or one truncated, is read from its
// start).
type AccessLog struct {
	path string

	mu      sync.Mutex
	started bool
	ino     uint64
	offset  int64
	partial string // a line nginx had not finished writing
	backend lbkit.Counters
	servers map[string]*lbkit.Counters // by upstream address
}

// NewAccessLog counts the lines of the access log at path (written in
// LogFormat) from the first Read on: that Read returns zero counters.
func NewAccessLog(path string) *AccessLog { return &AccessLog{path: path} }

// Path is the access log's path.
func (a *AccessLog) Path() string { return a.path }

// Read counts the lines appended since the last read and returns the
// counters so far.
func (a *AccessLog) Read() (lbkit.Counters, map[string]lbkit.Counters, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if err != nil {
		return lbkit.Counters{}, nil, fmt.Errorf("access log %s: %w (is nginx logging with `access_log %s upshift;`?)", a.path, unwrap(err), a.path)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return lbkit.Counters{}, nil, err
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	switch {
	case !a.started:
		// Counting starts now: what the log held before is another story.
		a.started, a.ino, a.offset = true, ino, st.Size()
		a.servers = map[string]*lbkit.Counters{}
	case ino != a.ino || st.Size() < a.offset:
		a.ino, a.offset, a.partial = ino, 0, "" // rotated
	}
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return lbkit.Counters{}, nil, err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		a.offset += int64(len(line))
		if err != nil {
			a.partial += line
			break
		}
		a.count(a.partial + strings.TrimSuffix(line, "\n"))
		a.partial = ""
	}
	servers := make(map[string]lbkit.Counters, len(a.servers))
	for addr, c := range a.servers {
		servers[addr] = *c
	}
	return a.backend, servers, nil
}

// count adds one request's line. Each upstream attempt counts on its server:
// a 502 is a connection error (nginx could not reach it or read an answer),
// a 504 a response error (it timed out), and a request that took more than
// one attempt was redispatched. A line without an upstream was answered by
// nginx itself (no live upstream: 502), counted by the backend only.
func (a *AccessLog) count(line string) {
	m := logLine.FindStringSubmatch(line)
	if m == nil {
		return // not a line of LogFormat
	}
	status, _ := strconv.Atoi(m[1])
	a.backend.Requests++
	if status >= 100 && status < 600 {
		a.backend.HTTP[status/100-1]++
	}
	addrs := attempts(m[2])
	codes := attempts(m[3])
	if len(addrs) > 1 {
		a.backend.Redispatches++
	}
	for i, addr := range addrs {
		if addr == "-" || i >= len(codes) {
			continue
		}
		c := a.servers[addr]
		if c == nil {
			c = &lbkit.Counters{}
			a.servers[addr] = c
		}
		c.Requests++
		code, err := strconv.Atoi(codes[i])
		switch {
		case err != nil: // "-": no answer at all
			c.ConnectionErrors++
			a.backend.ConnectionErrors++
		case code == 502:
			c.ConnectionErrors++
			a.backend.ConnectionErrors++
			c.HTTP[4]++
		case code == 504:
			c.ResponseErrors++
			a.backend.ResponseErrors++
			c.HTTP[4]++
		case code >= 100 && code < 600:
			c.HTTP[code/100-1]++
		}
	}
}

// attempts splits $upstream_addr or $upstream_status: one entry per
// attempt, ", " between attempts and " : " between internal redirects.
func attempts(s string) []string {
	s = strings.ReplaceAll(strings.TrimSpace(s), " : ", ", ")
	if s == "" {
		return nil
	}
	return strings.Split(s, ", ")
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
