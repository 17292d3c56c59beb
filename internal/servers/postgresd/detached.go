package postgresd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Detached is a PostgreSQL started to outlive the process that started it,
// as the demo lab needs. Everything about it is in Dir: the cluster
// (Dir/data, with PostgreSQL's own postmaster.pid; a link to it when it was
// relocated for the postgres user, see the package comment), the port
// (Dir/port), the password (Dir/password), the log (Dir/postgres.log) and
// the unix socket. Any process given Dir can reach it (DetachedAt) and stop
// it.
//
//	d, err := postgresd.StartDetached(ctx, filepath.Join(labDir, "postgres"))
//	... d.DSN("postgres") ...
//	// later, perhaps in another process:
//	err = postgresd.DetachedAt(filepath.Join(labDir, "postgres")).Stop()
//	// and to discard the data too:
//	err = postgresd.DetachedAt(filepath.Join(labDir, "postgres")).Remove()
type Detached struct {
	Dir     string
	DataDir string
	LogFile string
	// Host is always 127.0.0.1.
	Host string
	// Port is read from Dir/port: 0 when the server was never started.
	Port int
	// User is the superuser, "postgres"; Password, read from Dir/password,
	// is its password ("" for a cluster made before passwords).
	User     string
	Password string
}

// StartDetached starts the cluster in dir (running initdb the first time)
// and returns once it accepts connections. The server runs in its own
// session with no tie to this process: it keeps running after this process
// exits, until Stop. Its port is picked free on the first start and kept
// in dir/port; a later StartDetached of the same dir (after Stop, or a
// reboot) starts the same cluster on the same port, so DSNs handed out
// stay valid, or fails when another process holds that port. A server
// already running in dir is returned as it is. ctx bounds the start only.
func StartDetached(ctx context.Context, dir string) (*Detached, error) {
	return startDetached(ctx, Options{Dir: dir})
}

func startDetached(ctx context.Context, o Options) (*Detached, error) {
	if o.Dir == "" {
		return nil, errors.New("postgresd: StartDetached needs a directory")
	}
	ctx, cancel := o.deadline(ctx)
	defer cancel()
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if d := DetachedAt(dir); d.Running() {
		return d, nil
	}
	sweep()
	c, err := prepare(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	port, kept := o.Port, false
	if port == 0 {
		port = DetachedAt(dir).Port
		kept = port != 0
	}
	// Setsid: a session of its own, so neither the terminal's hangup nor
	// signals to the starter's process group reach it; and no death
	// signal. While this process lives it reaps the server should it exit;
	// after, the server is adopted like any daemon.
	_, got, err := c.launch(ctx, port, &syscall.SysProcAttr{Setsid: true})
	if err != nil {
		if kept {
			err = fmt.Errorf("%w (port %d is the one kept in %s, so that DSNs handed out stay valid)", err, port, filepath.Join(dir, portFile))
		}
		return nil, err
	}
	d := DetachedAt(dir)
	if err := dbserver.WriteFile(filepath.Join(dir, portFile), []byte(strconv.Itoa(got)+"\n"), 0o644); err != nil {
		_ = d.Stop()
		return nil, err
	}
	d.Port = got
	return d, nil
}

// DetachedAt names the detached server kept in dir, reading its port and
// password back from dir. It does not check that the server runs: see
// Running.
func DetachedAt(dir string) *Detached {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	d := &Detached{Dir: dir, DataDir: filepath.Join(dir, dataDir), LogFile: filepath.Join(dir, logFile), Host: "127.0.0.1", User: Superuser,
		Password: dbserver.ReadPassword(filepath.Join(dir, passwordFile))}
	if b, err := dbserver.ReadFile(filepath.Join(dir, portFile)); err == nil {
		d.Port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return d
}

// Addr is "127.0.0.1:port".
func (d *Detached) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// DSN is a pgx URL reaching database db as the superuser ("" is the
// maintenance database "postgres"). It holds the password: redact it
// before showing it.
func (d *Detached) DSN(db string) string { return dsn(d.User, d.Password, d.Host, d.Port, db) }

// Log returns what the server has written to its log.
func (d *Detached) Log() string {
	b, _ := dbserver.ReadFile(d.LogFile)
	return string(b)
}

// PID is the postmaster's pid from PostgreSQL's own postmaster.pid, or 0
// when there is none (never started, or shut down cleanly) or it names a
// process that is not this cluster's postmaster.
func (d *Detached) PID() int {
	pid := readPid(filepath.Join(d.DataDir, "postmaster.pid"))
	if !ours(pid, realData(d.DataDir)) {
		return 0
	}
	return pid
}

// Running reports whether the cluster's postmaster is alive. A
// postmaster.pid left by a killed server names a pid some other program
// may have since, another postmaster included: only a postgres serving
// this cluster counts.
func (d *Detached) Running() bool { return d.PID() != 0 }

// Stop shuts the server down (fast shutdown, escalating as Server.Stop
// does) and waits until the postmaster is gone. The directory, with the
// cluster and the port, stays: StartDetached starts it again. Stopping a
// server that does not run is not an error, and a stale postmaster.pid
// gets nobody signalled.
func (d *Detached) Stop() error {
	pid := d.PID()
	if pid == 0 {
		return nil
	}
	return stop(pid, func() bool { return !procfs.Alive(pid) })
}

// Remove deletes a stopped server's Dir and, when its cluster was
// relocated for the postgres user, that cluster too (removing Dir alone
// leaves it for a later sweep): the folder Dir/data links to, when it is
// a relocated cluster's folder of root's, in the temporary folder, that
// names Dir its owner. It refuses while the
// server runs. mariadbd's Detached.Remove does the same.
func (d *Detached) Remove() error {
	if d.Running() {
		return fmt.Errorf("postgresd: the server in %s is running; stop it first", d.Dir)
	}
	if target, err := os.Readlink(d.DataDir); err == nil {
		if run, err := relocated(d.Dir, target); err == nil {
			if err := os.RemoveAll(run); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(d.Dir)
}
