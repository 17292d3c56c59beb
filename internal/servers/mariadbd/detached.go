package mariadbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Detached is a MariaDB started to outlive the process that started it, as
// the demo lab needs. Everything about it lives in Dir: the datadir, the
// socket, the pid file, the log (mariadbd.log), the port (a file named
// "port") and root's password (a file named "password"), so any process
// given Dir can find, use and stop it.
//
// Typical use:
//
//	d, err := mariadbd.StartDetached(ctx, dir) // `lab up`: returns once root logs in
//	dsn := d.DSN("shop")                       // root:PASSWORD@tcp(127.0.0.1:PORT)/shop
//	...
//	err = mariadbd.DetachedAt(dir).Stop()      // `lab down`, in another process
//	err = mariadbd.DetachedAt(dir).Remove()    // and to discard the data too
type Detached struct {
	// Dir holds everything below.
	Dir     string
	DataDir string
	Socket  string
	PidFile string
	LogFile string
	// PortFile holds the port as decimal text.
	PortFile string
	// Host is 127.0.0.1; Port is 0 when the server never started.
	Host string
	Port int
	// User is root; Password, read from Dir, is its password ("" when the
	// server never started).
	User     string
	Password string
}

// DetachedAt names the server in dir, reading its port from dir. It starts
// nothing; Running says whether the server is up.
func DetachedAt(dir string) *Detached {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	p := pathsIn(dir)
	return &Detached{
		Dir: dir, DataDir: p.data, Socket: p.socket, PidFile: p.pid, LogFile: p.log, PortFile: p.port,
		Host: Host, Port: readPort(p), User: User, Password: dbserver.ReadPassword(p.password),
	}
}

func (d *Detached) paths() paths { return pathsIn(d.Dir) }

// Addr is host:port.
func (d *Detached) Addr() string { return d.Host + ":" + strconv.Itoa(d.Port) }

// DSN is a go-sql-driver/mysql DSN for database db as root:
// root:PASSWORD@tcp(127.0.0.1:PORT)/db. An empty db selects none. It holds
// the password: redact it before showing it.
func (d *Detached) DSN(db string) string { return dsn(d.User, d.Password, d.Addr(), db) }

// StartDetached starts the MariaDB kept in dir (created if need be) in its
// own session, logging to dir/mariadbd.log, and returns once root can log
// in over TCP. The first start installs a fresh datadir; later ones reuse
// it, and its data. The port is picked free on the first start and kept
// in dir/port: a later start uses the same one, so DSNs handed out earlier
// keep working, or fails when another process holds it. If the server in dir is already running,
// StartDetached returns it as it is. ctx bounds the install and the start
// only: the server runs until Stop, whatever happens to the caller.
func StartDetached(ctx context.Context, dir string) (*Detached, error) {
	return startDetached(ctx, Options{Dir: dir})
}

func startDetached(ctx context.Context, o Options) (*Detached, error) {
	if o.Dir == "" {
		return nil, errors.New("mariadbd: StartDetached needs a directory")
	}
	o = o.withDefaults()
	bins, err := findBinaries(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	d := DetachedAt(o.Dir)
	if d.Running() {
		if err := ping(ctx, d.paths(), d.Password, d.Port); err != nil {
			return nil, fmt.Errorf("mariadbd: the server in %s runs (pid %d) but root cannot log in on %s: %w", d.Dir, d.PID(), d.Addr(), err)
		}
		return d, nil
	}
	sweep()
	p := d.paths()
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
	kept := o.Port == 0 && d.Port != 0
	if kept {
		o.Port = d.Port
	}
	// Its own session: no terminal hangup or process-group signal aimed at
	// the starter reaches the server. No parent-death signal, on purpose.
	attr := &syscall.SysProcAttr{Setsid: true}
	port, _, err := launchRetrying(ctx, o, bins, p, password, attr)
	if err != nil {
		if kept {
			err = fmt.Errorf("%w (port %d is the one kept in %s, so that DSNs handed out stay valid)", err, d.Port, d.PortFile)
		}
		return nil, err
	}
	// The goroutine in launch reaps the server if it exits while we run;
	// once we exit, init adopts it.
	if err := writePort(p, port); err != nil {
		_ = d.Stop()
		return nil, err
	}
	d.Port, d.Password = port, password
	return d, nil
}

// PID is the server's pid from its pid file, or 0 when the file is missing
// or names a process that is not a live mariadbd of this directory (a
// stale file whose pid was reused must never get a signal from Stop). The
// pid file is read without following a link or blocking on a FIFO.
func (d *Detached) PID() int {
	b, err := dbserver.ReadFile(d.PidFile)
	if err != nil {
		return 0
	}
	pid := procfs.ParsePid(b)
	if p, ok := procfs.Read(pid); !ok || !server(p, d.DataDir, d.binary()) {
		return 0
	}
	return pid
}

// binary is the server binary the last start in Dir ran, or "".
func (d *Detached) binary() string {
	b, err := dbserver.ReadFile(d.paths().binary)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// server reports whether p is a live mariadbd (or mysqld, or the binary
// bin that a start in its directory ran, whatever its name) serving
// datadir. A process without a command line (a kernel thread, a zombie)
// is not: a stale pid file may name one.
func server(p procfs.Proc, datadir, bin string) bool {
	if !p.Live() || len(p.Args) == 0 {
		return false
	}
	switch filepath.Base(p.Args[0]) {
	case "mariadbd", "mysqld":
		return ours(p.Args, datadir)
	}
	return bin != "" && runs(p.Pid, bin) && ours(p.Args, datadir)
}

// runs reports whether process pid runs the program file bin (the same
// file, however spelled).
func runs(pid int, bin string) bool {
	exe, err1 := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	want, err2 := os.Stat(bin)
	return err1 == nil && err2 == nil && os.SameFile(exe, want)
}

// ours reports whether a command line is a mariadbd serving datadir.
func ours(args []string, datadir string) bool {
	for _, a := range args {
		if a == "--datadir="+datadir {
			return true
		}
	}
	return false
}

// Running reports whether the server process is alive. (It may still be
// starting or shutting down; DSN connections tell whether it serves.)
func (d *Detached) Running() bool { return d.PID() != 0 }

// Log returns the server's log.
func (d *Detached) Log() string {
	b, _ := dbserver.ReadFile(d.LogFile)
	return string(b)
}

// Stop shuts the server down cleanly (SIGTERM, SIGKILL after 30s) and waits
// until it is gone. The directory, datadir and port file stay, for the next
// StartDetached; Remove discards them. Stopping a server that is not
// running is not an error.
func (d *Detached) Stop() error {
	pid := d.PID()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("mariadbd: signalling pid %d: %w", pid, err)
	}
	if waitGone(pid, stopTimeout) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 5*time.Second) {
		return fmt.Errorf("mariadbd: pid %d (%s) did not stop", pid, d.Dir)
	}
	// Killed, it left its pid file behind.
	_ = os.Remove(d.PidFile)
	return fmt.Errorf("mariadbd: no clean shutdown of %s within %s; killed", d.Dir, stopTimeout)
}

func waitGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for procfs.Alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Remove deletes a stopped server's Dir, datadir and all, as postgresd's
// Detached.Remove does. It refuses while the server runs.
func (d *Detached) Remove() error {
	if d.Running() {
		return fmt.Errorf("mariadbd: the server in %s is running; stop it first", d.Dir)
	}
	return os.RemoveAll(d.Dir)
}
