// Package mariadbd owns running a real, throwaway MariaDB for upshift's tests
// and demo lab. It installs a fresh datadir with mariadb-install-db, starts
// mariadbd on a free loopback port with everything (datadir, socket, pid
// file, log) in one directory, waits until root can log in over TCP, and
// shuts the server down cleanly. It never reads an option file
// (--no-defaults), so the machine's own MariaDB, its datadir and its socket
// are never touched.
//
// Start and Server.Stop are for tests: the server dies with the process that
// started it. StartDetached, DetachedAt and Detached.Stop are for the demo
// lab: the server outlives the starting process and another process can stop
// it knowing only its directory.
//
// Authentication: root has a random password, kept in Dir/password (mode
// 0600) and set by an init file at every start, before the server accepts
// a connection (so a datadir made before passwords gets one too); root's
// other accounts are dropped. Another local user reaching the port gets
// nothing. DSN includes the password.
//
// As root, mariadbd runs as root (--user=root) and every file is root's,
// in a Dir no other user is given. Files are still written and read
// through plugins/internal/dbserver, which follows no symbolic link and
// opens no FIFO planted at their paths.
//
// A test binary that panics or is killed cannot stop its server or remove
// the temporary directory Start made for it; the kernel kills the server
// (Linux) and the next Start, in any process, removes such directories
// whose maker has exited and whose server is not running (see
// plugins/internal/dbserver).
//
// Ports: a port given in Options is used or the start fails; a port picked
// free is picked again when another process takes it first. A detached
// server started again keeps the port it had, or fails saying so, so that
// DSNs handed out stay valid (postgresd does the same). A directory whose
// path is too long for the unix socket is refused: MariaDB cannot run
// without a socket, and without ours it would use the machine's. (postgresd
// listens on TCP only then.)
package mariadbd

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
)

// Host is the only address the servers listen on.
const Host = "127.0.0.1"

// User is the account tests and the lab use: root, with the password in
// the server's directory.
const User = "root"

// Names of the files a server keeps in its directory.
const (
	dataDir    = "data"
	socketFile = "mariadbd.sock"
	pidFile    = "mariadbd.pid"
	logFile    = "mariadbd.log"
	installLog = "install.log"
	portFile   = "port"
	// passwordFile holds root's password; initFile, which sets it, exists
	// only while the server starts.
	passwordFile = "password"
	initFile     = "init.sql"
	// binaryFile names the server binary a start ran (links resolved), so
	// that a server of a binary not named mariadbd or mysqld is known too.
	binaryFile = "server-binary"
	// tempPrefix names the directories Start makes when given no Dir.
	tempPrefix = "upshift-mariadb-"
)

// Options says which server to run and where. Zero values get the defaults
// documented per field.
type Options struct {
	// Dir holds the datadir, socket, pid file and logs. Default: a fresh
	// temporary directory, removed by Stop. A Dir that already holds an
	// installed datadir is reused as it is; a given Dir is never removed.
	Dir string
	// Port is the TCP port on 127.0.0.1. Default: a free port, picked again
	// if another process takes it before mariadbd binds it.
	Port int
	// Mariadbd is the server binary. Default: /usr/sbin/mariadbd, else
	// mariadbd on PATH.
	Mariadbd string
	// InstallDB is the datadir installer. Default: mariadb-install-db, else
	// mysql_install_db, on PATH or in /usr/bin.
	InstallDB string
	// ReadyTimeout bounds the wait from starting mariadbd to root's first
	// login (and the install, separately). Default 60s; ctx may end it
	// sooner.
	ReadyTimeout time.Duration
	// Args are extra mariadbd options, after (so overriding) this
	// package's own, e.g. a bigger --innodb-buffer-pool-size for a
	// benchmark of real size.
	Args []string
}

func (o Options) withDefaults() Options {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	return o
}

// binaries are the resolved paths of the two programs a server needs.
type binaries struct{ server, install string }

func findBinaries(o Options) (binaries, error) {
	server, err := findProgram("server", o.Mariadbd, []string{"/usr/sbin/mariadbd", "mariadbd"})
	if err != nil {
		return binaries{}, err
	}
	install, err := findProgram("installer", o.InstallDB,
		[]string{"mariadb-install-db", "/usr/bin/mariadb-install-db", "mysql_install_db", "/usr/bin/mysql_install_db"})
	if err != nil {
		return binaries{}, err
	}
	return binaries{server: server, install: install}, nil
}

// findProgram returns given when set (it must exist and be executable),
// else the first of candidates found.
func findProgram(role, given string, candidates []string) (string, error) {
	if given != "" {
		p, err := exec.LookPath(given)
		if err != nil {
			return "", fmt.Errorf("mariadbd: %s %q: %w", role, given, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("mariadbd: no %s: none of %s found (apt install mariadb-server)", role, strings.Join(candidates, ", "))
}

// Available reports whether mariadbd and mariadb-install-db can be found, so
// callers can say why they cannot run a server instead of failing obscurely.
func Available() bool {
	_, err := findBinaries(Options{})
	return err == nil
}

// pickPort is dbserver.FreePort; tests replace it to force a port
// collision.
var pickPort = dbserver.FreePort

// paths are the files of a server in dir.
type paths struct{ dir, data, socket, pid, log, port, password, init, binary string }

func pathsIn(dir string) paths {
	return paths{
		dir:      dir,
		data:     filepath.Join(dir, dataDir),
		socket:   filepath.Join(dir, socketFile),
		pid:      filepath.Join(dir, pidFile),
		log:      filepath.Join(dir, logFile),
		port:     filepath.Join(dir, portFile),
		password: filepath.Join(dir, passwordFile),
		init:     filepath.Join(dir, initFile),
		binary:   filepath.Join(dir, binaryFile),
	}
}

// userArgs lets mariadbd run as root when we are root: it refuses to
// otherwise. Running as root rather than as the mysql user keeps the
// datadir ours (a test's temp dir sits under root-only 0700 folders the
// mysql user cannot enter, and cleanup can remove everything).
func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// innodbArgs keep the server small and fast: a throwaway server needs
// neither durability nor a large buffer pool. Native AIO is off because
// io_uring and libaio are often unavailable in containers, and the tests do
// little I/O. Used for the install too, so the log file it creates already
// has the size the server wants.
func innodbArgs() []string {
	return []string{
		"--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=8M",
		"--innodb-flush-log-at-trx-commit=0",
		"--skip-innodb-doublewrite",
		"--innodb-use-native-aio=0",
	}
}

// installed reports whether p's datadir holds system tables already.
func installed(p paths) bool {
	st, err := os.Stat(filepath.Join(p.data, "mysql"))
	return err == nil && st.IsDir()
}

// install creates the datadir with root@localhost (and @127.0.0.1) without
// a password and no test database. The installer runs the server without
// networking; the first start sets the password before it accepts
// connections (initSQL).
func install(ctx context.Context, bins binaries, p paths, limit time.Duration) error {
	if installed(p) {
		return nil
	}
	// A half-made datadir from an interrupted install would make the next
	// one fail; it holds nothing worth keeping.
	if err := os.RemoveAll(p.data); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := append([]string{"--no-defaults", "--datadir=" + p.data, "--auth-root-authentication-method=normal", "--skip-test-db",
		"--tmpdir=" + p.dir}, userArgs()...)
	args = append(args, innodbArgs()...)
	logf, err := dbserver.Create(filepath.Join(p.dir, installLog), 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bins.install, args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The installer is a script running mariadbd --bootstrap: on timeout,
	// end the whole process group, not just the script.
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		b, _ := dbserver.ReadFile(logf.Name())
		return fmt.Errorf("mariadbd: %s: %v: %s", filepath.Base(bins.install), err, dbserver.LastLines(string(b), 5))
	}
	return nil
}

// initSQL gives root's accounts that a login over TCP or the socket may
// match the password, and drops the ones it cannot match (by host name,
// under --skip-name-resolve) and any anonymous account.
func initSQL(password string) string {
	q := func(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }
	var alter []string
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		alter = append(alter, "'root'@"+q(h)+" IDENTIFIED BY "+q(password))
	}
	drop := []string{"''@'localhost'"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		drop = append(drop, "'root'@"+q(h), "''@"+q(h))
	}
	// One statement a line: how mariadbd reads an init file.
	return "ALTER USER IF EXISTS " + strings.Join(alter, ", ") + ";\nDROP USER IF EXISTS " + strings.Join(drop, ", ") + ";\n"
}

// serverArgs runs mariadbd on port with every file in p.dir. --no-defaults
// comes first (mariadbd requires it there): /etc/mysql/my.cnf names the
// machine's datadir and socket.
func serverArgs(p paths, port int) []string {
	args := append([]string{"--no-defaults"}, userArgs()...)
	args = append(args,
		"--datadir="+p.data,
		"--socket="+p.socket,
		"--pid-file="+p.pid,
		"--log-error="+p.log,
		"--tmpdir="+p.dir,
		"--secure-file-priv="+p.dir, // LOAD DATA / INTO OUTFILE stay inside the directory
		"--port="+strconv.Itoa(port),
		"--init-file="+p.init,
		"--bind-address="+Host,
		"--skip-name-resolve",
		"--skip-log-bin",
		"--performance-schema=OFF",
		"--max-connections=100",
		"--table-open-cache=256", // keeps the open-files request under common limits, without a warning
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci", // as Debian's packaged server has it
		"--innodb-buffer-pool-dump-at-shutdown=0",
		"--innodb-buffer-pool-load-at-startup=0", // about 1s less at shutdown
	)
	return append(args, innodbArgs()...)
}

// validate rejects a directory mariadbd could not use, with a reason.
func validate(p paths) error {
	// sockaddr_un holds 108 bytes with the terminating NUL.
	if len(p.socket) > 107 {
		return fmt.Errorf("mariadbd: directory %q is too long for a unix socket path (%d bytes, at most 107)", p.dir, len(p.socket))
	}
	return nil
}

// errPortTaken says mariadbd could not bind its port: another process took
// it between picking it and the bind.
var errPortTaken = errors.New("port already in use")

// proc is one mariadbd process as its starter sees it.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// launch starts mariadbd on port and waits until root logs in with
// password, or until it exits, ctx ends or limit passes. attr decides
// whether the server dies with us (tests) or lives on in its own session
// (lab).
func launch(ctx context.Context, bins binaries, p paths, password string, port int, limit time.Duration, attr *syscall.SysProcAttr, extra []string) (*proc, error) {
	// Read by the server before it accepts connections, so no login ever
	// finds root without a password; not needed once it has.
	if err := dbserver.WriteFile(p.init, []byte(initSQL(password)), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(p.init)
	logf, err := dbserver.OpenLog(p.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	st, _ := logf.Stat()
	logStart := st.Size()
	// Not CommandContext: the server outlives the ctx that started it.
	cmd := exec.Command(bins.server, append(serverArgs(p, port), extra...)...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("mariadbd: starting %s: %w", bins.server, err)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		pr.waitErr = cmd.Wait()
		close(pr.done)
	}()
	if err := waitReady(ctx, pr, p, password, port, limit); err != nil {
		kill(pr)
		this := dbserver.LogSince(p.log, logStart)
		if strings.Contains(this, "Address already in use") {
			return nil, fmt.Errorf("mariadbd: port %d: %w", port, errPortTaken)
		}
		return nil, fmt.Errorf("%v; log %s: %s", err, p.log, dbserver.LastLines(this, 5))
	}
	return pr, nil
}

// waitReady polls a root login over TCP, which is what callers need: a
// port that accepts connections may still be a server that is starting,
// or another process's.
func waitReady(ctx context.Context, pr *proc, p paths, password string, port int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// A login attempt stuck on whatever else holds the port ends when our
	// server exits.
	go func() {
		select {
		case <-pr.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var lastErr error
	for {
		if lastErr = ping(ctx, p, password, port); lastErr == nil {
			return nil
		}
		if pr.exited() {
			return fmt.Errorf("mariadbd: exited before accepting connections: %v", pr.waitErr)
		}
		select {
		case <-pr.done:
			return fmt.Errorf("mariadbd: exited before accepting connections: %v", pr.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("mariadbd: no root login on %s within %s: %v", net.JoinHostPort(Host, strconv.Itoa(port)), limit, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping logs in as root on port and checks that the server answering is the
// one of p: whatever else holds the port (another MariaDB, say, while ours
// is failing to bind it) must not pass for ours.
func ping(ctx context.Context, p paths, password string, port int) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = User, password, "tcp", net.JoinHostPort(Host, strconv.Itoa(port))
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var socket string
	if err := db.QueryRowContext(ctx, "SELECT @@socket").Scan(&socket); err != nil {
		return err
	}
	if socket != p.socket {
		return fmt.Errorf("the server on port %d is another one (its socket is %s)", port, socket)
	}
	return nil
}

// stopTimeout bounds a clean shutdown before SIGKILL.
const stopTimeout = 30 * time.Second

// kill ends a server that failed to start, without waiting for a clean
// shutdown.
func kill(pr *proc) {
	_ = pr.cmd.Process.Kill()
	<-pr.done
}

// Server is a running throwaway MariaDB, started by Start for a test.
type Server struct {
	// Host is 127.0.0.1, Port the TCP port; User is root, and Password its
	// password.
	Host     string
	Port     int
	User     string
	Password string
	// Dir holds DataDir, Socket, the pid file and LogFile.
	Dir     string
	DataDir string
	Socket  string
	LogFile string

	pr      *proc
	tmp     *dbserver.TempDir // the directory Start made, removed by Stop
	mu      sync.Mutex
	stopped bool
	stopErr error
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// DSN is a go-sql-driver/mysql DSN for database db as root:
// root:PASSWORD@tcp(127.0.0.1:PORT)/db. An empty db selects none. It holds
// the password: redact it before showing it.
func (s *Server) DSN(db string) string { return dsn(s.User, s.Password, s.Addr(), db) }

func dsn(user, password, addr, db string) string {
	if password != "" {
		user += ":" + password
	}
	return fmt.Sprintf("%s@tcp(%s)/%s", user, addr, db)
}

// PID is the mariadbd process's pid.
func (s *Server) PID() int { return s.pr.cmd.Process.Pid }

// Done is closed when mariadbd has exited.
func (s *Server) Done() <-chan struct{} { return s.pr.done }

// Log returns the server's error log.
func (s *Server) Log() string {
	b, _ := dbserver.ReadFile(s.LogFile)
	return string(b)
}

// Start installs a fresh datadir and starts mariadbd on a free loopback
// port, returning once root can log in over TCP. ctx bounds the install
// and the start, not the server's life: Stop ends it, and so does the
// death of the starting process (Linux), after which a later Start
// removes the directory. A port taken by another process between picking
// and binding is retried on a new one.
func Start(ctx context.Context, o Options) (*Server, error) {
	o = o.withDefaults()
	bins, err := findBinaries(o)
	if err != nil {
		return nil, err
	}
	sweep()
	dir := o.Dir
	var tmp *dbserver.TempDir
	if dir == "" {
		if tmp, err = dbserver.MkdirTemp(tempPrefix); err != nil {
			return nil, err
		}
		dir = tmp.Path
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Absolute: mariadbd runs in dir and resolves its paths from there.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	s, err := start(ctx, o, bins, pathsIn(dir))
	if err != nil {
		if tmp != nil {
			_ = os.RemoveAll(dir)
			tmp.Release()
		}
		return nil, err
	}
	s.tmp = tmp
	return s, nil
}

// sweep removes the directories of earlier Starts whose process has exited
// (a panicked or killed test binary) and whose server is not running.
func sweep() {
	dbserver.Sweep(tempPrefix, func(dir string) bool {
		return dbserver.Abandoned(dir) && !DetachedAt(dir).Running()
	})
}

func start(ctx context.Context, o Options, bins binaries, p paths) (*Server, error) {
	if err := validate(p); err != nil {
		return nil, err
	}
	if err := install(ctx, bins, p, o.ReadyTimeout); err != nil {
		return nil, err
	}
	password, err := dbserver.Password(p.password)
	if err != nil {
		return nil, err
	}
	port, pr, err := launchRetrying(ctx, o, bins, p, password, sysProcAttr())
	if err != nil {
		return nil, err
	}
	_ = writePort(p, port)
	return &Server{Host: Host, Port: port, User: User, Password: password, Dir: p.dir, DataDir: p.data, Socket: p.socket, LogFile: p.log, pr: pr}, nil
}

// launchRetrying starts mariadbd on o.Port, else on a free port, trying up
// to three ports when one turns out taken.
func launchRetrying(ctx context.Context, o Options, bins binaries, p paths, password string, attr *syscall.SysProcAttr) (int, *proc, error) {
	if err := recordBinary(bins, p); err != nil {
		return 0, nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := o.Port
		if port == 0 {
			var err error
			if port, err = pickPort(); err != nil {
				return 0, nil, err
			}
		}
		pr, err := launch(ctx, bins, p, password, port, o.ReadyTimeout, attr, o.Args)
		if err == nil {
			return port, pr, nil
		}
		lastErr = err
		if o.Port != 0 || !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
	}
	return 0, nil, lastErr
}

// Stop shuts mariadbd down cleanly (SIGTERM, SIGKILL after 30s) and removes
// the directory when Start made it. Safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	s.stopErr = s.stop()
	if s.tmp != nil {
		if err := os.RemoveAll(s.Dir); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
		s.tmp.Release()
	}
	return s.stopErr
}

func (s *Server) stop() error {
	if s.pr.exited() {
		return fmt.Errorf("mariadbd: had exited before Stop: %v: %s", s.pr.waitErr, dbserver.LastLines(s.Log(), 3))
	}
	_ = s.pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.pr.done:
		if s.pr.waitErr != nil {
			return fmt.Errorf("mariadbd: shutdown: %v: %s", s.pr.waitErr, dbserver.LastLines(s.Log(), 3))
		}
		return nil
	case <-time.After(stopTimeout):
		kill(s.pr)
		return fmt.Errorf("mariadbd: no clean shutdown within %s; killed", stopTimeout)
	}
}

// writePort records the port in the directory, atomically, for DetachedAt
// and for anyone inspecting the directory.
func writePort(p paths, port int) error {
	return dbserver.WriteFile(p.port, []byte(strconv.Itoa(port)+"\n"), 0o600)
}

func readPort(p paths) int {
	b, err := dbserver.ReadFile(p.port)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// recordBinary keeps in p.binary the server binary about to run, its links
// resolved: PID recognises a server by it.
func recordBinary(bins binaries, p paths) error {
	bin, err := filepath.EvalSymlinks(bins.server)
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return fmt.Errorf("mariadbd: resolving the server binary %s: %w", bins.server, err)
	}
	return dbserver.WriteFile(p.binary, []byte(bin+"\n"), 0o600)
}
