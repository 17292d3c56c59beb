// Package postgresd owns running a real, throwaway PostgreSQL for upshift's
// tests and demo lab: it finds the server binaries, creates a cluster with
// initdb in a directory of its own (trust auth for the superuser "postgres"
// on loopback, durability off for speed), starts the server on a free
// 127.0.0.1 port with its unix socket inside that directory, waits until it
// accepts connections, and stops it without leaving processes or files
// behind. It never touches the machine's own PostgreSQL (port 5432, its
// data directory or its socket directory).
//
// Start gives a server tied to the calling process (tests: stop it in
// t.Cleanup or after m.Run). StartDetached, in detached.go, gives one that
// outlives it (the demo lab), stopped later by any process that knows the
// directory.
//
// PostgreSQL refuses to run as root. When the caller is root, initdb and the
// server run as the OS user "postgres" (created by Debian's postgresql
// package), and the directory is made theirs.
package postgresd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotFound is returned (wrapped) when initdb or postgres cannot be found,
// so tests can skip or fail with the reason.
var ErrNotFound = errors.New("PostgreSQL server binaries not found")

// Superuser is the role initdb creates and Server.User names; trust auth, no
// password.
const Superuser = "postgres"

// Files a server keeps in its directory.
const (
	dataDir  = "data"
	logFile  = "postgres.log"
	portFile = "port"
)

// Options describe the server to run. Zero values get the defaults
// documented per field.
type Options struct {
	// BinDir holds initdb and postgres. Default: the newest
	// /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else
	// the directory of initdb on PATH.
	BinDir string
	// Dir holds the cluster (Dir/data), the unix socket and the log
	// (Dir/postgres.log). Default: a fresh temporary directory, removed by
	// Stop. A Dir whose data directory already holds a cluster is started
	// as it is, without initdb.
	Dir string
	// Port is the TCP port on 127.0.0.1. Default: a free one, picked again
	// when another process takes it before the server binds it.
	Port int
	// StartTimeout bounds initdb plus start-up. Default 60s.
	StartTimeout time.Duration
	// Settings are extra server settings, passed as -c name=value and
	// applied after (so overriding) this package's own.
	Settings map[string]string
}

// Server is a running PostgreSQL started by Start, tied to this process.
type Server struct {
	// Host is always 127.0.0.1: the server listens on nothing else.
	Host string
	// Port is the TCP port on Host.
	Port int
	// User is the superuser, "postgres", trusted without a password.
	User string
	// Dir holds DataDir, the socket and LogFile.
	Dir string
	// DataDir is the cluster's data directory.
	DataDir string
	// SocketDir is the unix socket's directory (Dir), or "" when Dir's path
	// is too long for a socket and the server listens on TCP only.
	SocketDir string
	// LogFile is the server's stderr.
	LogFile string
	// BinDir holds the binaries that run it.
	BinDir string

	ownDir  bool
	p       *proc
	mu      sync.Mutex // serialises Stop
	stopped bool
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// DSN is a pgx URL reaching database db as the superuser, e.g.
// "postgres://postgres@127.0.0.1:40123/db?sslmode=disable". An empty db
// is the maintenance database "postgres".
func (s *Server) DSN(db string) string { return dsn(s.User, s.Host, s.Port, db) }

// Log returns what the server has written to its log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// PID is the postmaster's pid.
func (s *Server) PID() int { return s.p.cmd.Process.Pid }

// Done is closed when the postmaster has exited.
func (s *Server) Done() <-chan struct{} { return s.p.done }

func dsn(usr, host string, port int, db string) string {
	if db == "" {
		db = "postgres"
	}
	u := url.URL{Scheme: "postgres", User: url.User(usr), Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Start creates (unless Dir already holds one) and starts a cluster and
// returns once it accepts connections. ctx bounds the start only: the
// server runs until Stop. If this process dies first, the kernel stops the
// server (Linux; immediate shutdown) so no orphan outlives a crashed test.
func Start(ctx context.Context, o Options) (*Server, error) {
	ctx, cancel := o.deadline(ctx)
	defer cancel()
	dir, ownDir := o.Dir, false
	if dir == "" {
		var err error
		// Not t.TempDir-style nesting: os.TempDir is searchable by the
		// postgres user, a root-owned 0700 parent would not be.
		if dir, err = os.MkdirTemp("", "upshift-postgres-"); err != nil {
			return nil, err
		}
		ownDir = true
	}
	s, err := start(ctx, o, dir)
	if err != nil {
		if ownDir {
			_ = os.RemoveAll(dir)
		}
		return nil, err
	}
	s.ownDir = ownDir
	return s, nil
}

func start(ctx context.Context, o Options, dir string) (*Server, error) {
	c, err := prepare(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	p, port, err := c.launch(ctx, o.Port, foregroundAttr())
	if err != nil {
		return nil, err
	}
	return &Server{Host: "127.0.0.1", Port: port, User: Superuser, Dir: c.dir, DataDir: c.data,
		SocketDir: c.socketDir(port), LogFile: c.log, BinDir: c.bin, p: p}, nil
}

// Stop shuts the server down (fast shutdown: sessions are ended, a
// checkpoint written; escalating to immediate after 30s and SIGKILL after
// 5s more), waits for it, and removes Dir when Start made it. Safe to call
// more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	err := stop(s.p.cmd.Process.Pid, func() bool {
		select {
		case <-s.p.done:
			return true
		default:
			return false
		}
	})
	if s.ownDir {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// stop signals the postmaster pid until gone reports it has exited.
func stop(pid int, gone func() bool) error {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, 30 * time.Second}, // fast shutdown
		{syscall.SIGQUIT, 5 * time.Second}, // immediate shutdown
		{syscall.SIGKILL, 5 * time.Second}, // backends exit when they see the postmaster gone
	} {
		if gone() {
			return nil
		}
		if err := syscall.Kill(pid, step.sig); errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("postgresd: not allowed to signal postmaster pid %d (started by another user?): %w", pid, err)
		}
		deadline := time.Now().Add(step.wait)
		for !gone() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !gone() {
		return fmt.Errorf("postgresd: postmaster pid %d did not stop", pid)
	}
	return nil
}

func (o Options) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	d := o.StartTimeout
	if d <= 0 {
		d = 60 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// FindBin returns the directory holding initdb and postgres: dir itself when
// given, else the newest /usr/lib/postgresql/*/bin, else initdb's directory
// on PATH. The error wraps ErrNotFound.
func FindBin(dir string) (string, error) {
	if dir != "" {
		if err := hasServer(dir); err != nil {
			return "", err
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return newer(version(dirs[i]), version(dirs[j])) })
	for _, d := range dirs {
		if hasServer(d) == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && hasServer(filepath.Dir(p)) == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("postgresd: %w: no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH (install postgresql: run .ci/setup)", ErrNotFound)
}

func hasServer(dir string) error {
	for _, name := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("postgresd: %w: no executable %s in %s", ErrNotFound, name, dir)
		}
	}
	return nil
}

// version is the numbers of /usr/lib/postgresql/<version>/bin: 15 -> [15],
// 9.6 -> [9 6].
func version(binDir string) []int {
	var v []int
	for _, f := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, _ := strconv.Atoi(f)
		v = append(v, n)
	}
	return v
}

func newer(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return len(a) > len(b)
}

// Available reports whether the server binaries can be found, so tests can
// skip with a reason where PostgreSQL is not installed.
func Available() bool {
	_, err := FindBin("")
	return err == nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePort is FreePort; a test replaces it to provoke a port collision.
var freePort = FreePort

// cluster is a data directory ready to start: binaries found, owner and
// permissions settled, initdb done.
type cluster struct {
	bin, dir, data, log string
	cred                *syscall.Credential // nil: run as ourselves
	home                string
	settings            map[string]string
}

// prepare finds the binaries, creates dir, hands it to the postgres user
// when we are root, and runs initdb unless dir/data holds a cluster.
func prepare(ctx context.Context, o Options, dir string) (*cluster, error) {
	bin, err := FindBin(o.BinDir)
	if err != nil {
		return nil, err
	}
	// Absolute: the server's data_directory is compared with it, and the
	// server changes directory before it uses the path.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir, data: filepath.Join(dir, dataDir), log: filepath.Join(dir, logFile), settings: o.Settings}
	if os.Geteuid() == 0 {
		if err := c.runAsPostgres(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); err == nil {
		return c, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", c.data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C",
		// Nothing here must survive a power cut: skip the fsync of every file.
		"--no-sync")
	c.setup(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("postgresd: initdb -D %s: %v: %s", c.data, err, lastLines(string(out), 5))
	}
	return c, nil
}

// runAsPostgres makes the cluster run as the OS user postgres: PostgreSQL
// refuses root. The directory becomes that user's, and directories above it
// that the user could not enter get the search bit for others (enter, not
// list).
func (c *cluster) runAsPostgres() error {
	u, err := user.Lookup(Superuser)
	if err != nil {
		return fmt.Errorf("postgresd: running as root, and PostgreSQL refuses to run as root; there is no OS user %q to run it as (install postgresql: run .ci/setup): %w", Superuser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("postgresd: OS user %s has uid %q gid %q", Superuser, u.Uid, u.Gid)
	}
	// Empty Groups: root's supplementary groups are dropped, not inherited.
	c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	c.home = u.HomeDir
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(c.dir, 0o700); err != nil {
		return err
	}
	return letIn(c.dir, uid, gid)
}

// letIn makes every directory above dir searchable by uid/gid, adding o+x
// to those this process owns and refusing others.
func letIn(dir string, uid, gid int) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := fi.Mode().Perm()
		can := perm&0o001 != 0 || (int(st.Uid) == uid && perm&0o100 != 0) || (int(st.Gid) == gid && perm&0o010 != 0)
		if !can {
			if int(st.Uid) != os.Geteuid() {
				return fmt.Errorf("postgresd: the postgres user cannot enter %s (mode %v, not ours to change): choose a Dir it can reach", p, perm)
			}
			keep := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
			if err := os.Chmod(p, keep|0o001); err != nil {
				return err
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// setup gives a server program its user, directory and environment.
func (c *cluster) setup(cmd *exec.Cmd) {
	cmd.Dir = c.dir
	env := []string{"LC_ALL=C"} // messages in English, as the port-collision check reads them
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// PG* would change defaults of initdb and the server; locale
		// variables are replaced by LC_ALL.
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || (c.cred != nil && k == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	if c.home != "" {
		env = append(env, "HOME="+c.home)
	}
	cmd.Env = env
	if c.cred != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = c.cred
	}
}

// socketDir is the unix socket's directory for port, or "" when the socket
// path would exceed the 107 bytes a unix socket path may have.
func (c *cluster) socketDir(port int) string {
	if len(c.dir)+len("/.s.PGSQL.")+len(strconv.Itoa(port)) > 107 || strings.ContainsAny(c.dir, "\", ") {
		return ""
	}
	return c.dir
}

// args are the server's command line for port. Settings go here rather than
// into postgresql.conf so a reused cluster never runs with stale ones.
func (c *cluster) args(port int) []string {
	set := [][2]string{
		{"port", strconv.Itoa(port)},
		{"listen_addresses", "127.0.0.1"},
		// Inside dir, never /var/run/postgresql where the machine's
		// server keeps its socket.
		{"unix_socket_directories", c.socketDir(port)},
		// Throwaway data: no durability, much faster DDL and commits.
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
	}
	keys := make([]string, 0, len(c.settings))
	for k := range c.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set = append(set, [2]string{k, c.settings[k]})
	}
	args := []string{"-D", c.data}
	for _, kv := range set {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}
	return args
}

// proc is a postmaster this process started and reaps.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// launch starts the server on port, or on a free port when port is 0
// (trying another if a different process takes it first), and waits until
// it accepts connections.
func (c *cluster) launch(ctx context.Context, port int, attr *syscall.SysProcAttr) (*proc, int, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		try := port
		if try == 0 {
			var err error
			if try, err = freePort(); err != nil {
				return nil, 0, err
			}
		}
		p, collided, err := c.launchOn(ctx, try, attr)
		if err == nil {
			return p, try, nil
		}
		lastErr = err
		if port != 0 || !collided || ctx.Err() != nil {
			break
		}
	}
	return nil, 0, lastErr
}

func (c *cluster) launchOn(ctx context.Context, port int, attr *syscall.SysProcAttr) (p *proc, collided bool, err error) {
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, false, err
	}
	offset, _ := logf.Seek(0, io.SeekEnd)
	// Not CommandContext: the server outlives the ctx that starts it.
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), c.args(port)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = attr
	c.setup(cmd)
	err = cmd.Start()
	logf.Close() // the server has its own descriptor
	if err != nil {
		return nil, false, fmt.Errorf("postgresd: starting %s: %w", cmd.Path, err)
	}
	p = &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := c.waitReady(ctx, p, port); err != nil {
		_ = stop(cmd.Process.Pid, p.exited)
		<-p.done
		log := c.logSince(offset)
		collided = strings.Contains(log, "Address already in use")
		return nil, collided, fmt.Errorf("%w; log %s: %s", err, c.log, lastLines(log, 5))
	}
	return p, false, nil
}

// waitReady polls until the server on port accepts a connection and is
// ours (its data_directory is c.data, not another server's that got the
// port), or exits, or ctx ends.
func (c *cluster) waitReady(ctx context.Context, p *proc, port int) error {
	cfg, err := pgx.ParseConfig(dsn(Superuser, "127.0.0.1", port, ""))
	if err != nil {
		return err
	}
	// A server that exits ends the wait at once, even mid-connect (to
	// whatever holds the port it could not bind).
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-pctx.Done():
		}
	}()
	var lastErr error
	for {
		lastErr = c.ping(pctx, cfg)
		if lastErr == nil {
			return nil
		}
		select {
		case <-pctx.Done():
		case <-time.After(50 * time.Millisecond):
			continue
		}
		if p.exited() {
			return fmt.Errorf("postgresd: server exited: %v", p.waitErr)
		}
		return fmt.Errorf("postgresd: server on 127.0.0.1:%d not ready: %v (last: %v)", port, ctx.Err(), lastErr)
	}
}

func (c *cluster) ping(ctx context.Context, cfg *pgx.ConnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var dd string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dd); err != nil {
		return err
	}
	if dd != c.data {
		return fmt.Errorf("port %d is another server's (data directory %s)", cfg.Port, dd)
	}
	return nil
}

func (c *cluster) logSince(offset int64) string {
	f, err := os.Open(c.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
