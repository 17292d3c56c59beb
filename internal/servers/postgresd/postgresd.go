// Package postgresd owns running a real, throwaway PostgreSQL for upshift's
// tests and demo lab: it finds the server binaries, creates a cluster with
// initdb in a directory of its own (durability off for speed), starts the
// server on a free 127.0.0.1 port with its unix socket inside that
// directory, waits until it accepts connections, and stops it without
// leaving processes or files behind. It never touches the machine's own
// PostgreSQL (port 5432, its data directory or its socket directory).
//
// Start gives a server tied to the calling process (tests: stop it in
// t.Cleanup or after m.Run). StartDetached, in detached.go, gives one that
// outlives it (the demo lab), stopped later by any process that knows the
// directory.
//
// Authentication: initdb gives the superuser "postgres" a random password,
// kept in Dir/password (mode 0600), and every connection, TCP or socket,
// must give it (scram-sha-256): another local user reaching the port gets
// nothing. DSN includes the password. A cluster made before passwords keeps
// the trust auth it was made with; its DSN has none. The unix socket is in
// the cluster's data directory.
//
// PostgreSQL refuses to run as root. When the caller is root, initdb and
// the server run as the OS user "postgres" (created by Debian's postgresql
// package), and only the cluster's data directory is made theirs: Dir
// stays root's (mode 0711 so that user may pass through it to Dir/data),
// and so do the files root writes there (password, port, log). A process
// of the postgres user, which the server's SQL can run, can thus plant
// nothing (a link to /etc/shadow, say) where root writes. (Besides, root
// writes and reads every file through plugins/internal/dbserver, which
// follows no link; a Dir that is not root's is refused, never taken from
// its owner, and so is a Dir/data linking anywhere but to a relocated
// cluster folder of root's naming Dir.) If that user cannot reach Dir (it sits below a folder such
// as root's 0700 home, or t.TempDir's), no folder above Dir is changed:
// the cluster lives instead in a folder of root's in the temporary folder
// (os.TempDir()/upshift-pgrun-*, mode 0711, naming Dir in its file
// "owner"; the data directory in it is the postgres user's), and Dir/data
// is a symbolic link to the cluster. Removing Dir orphans that folder;
// the next Start or StartDetached, in any process, removes orphans whose
// server is not running. (So does a boot that empties the temporary
// folder: the cluster of a Dir whose link then dangles starts afresh, with
// the same password.) initdb reads the password from a file next to the
// cluster, made by root in that root-owned folder for the postgres user
// only, and removed once read.
//
// A test binary that panics or is killed cannot stop its server or remove
// the temporary directory Start made for it; the kernel stops the server
// (Linux) and the next Start, in any process, removes such directories
// whose maker has exited and whose server is not running (see
// plugins/internal/dbserver).
//
// Ports: a port given in Options is used or the start fails; a port picked
// free is picked again when another process takes it first. A detached
// server started again keeps the port it had, or fails saying so, so that
// DSNs handed out stay valid (mariadbd does the same). When Dir's path is
// too long for a unix socket path, the server listens on TCP only (nothing
// here uses the socket); mariadbd refuses such a directory instead, as
// MariaDB cannot run without a socket and would fall back to the
// machine's.
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

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// ErrNotFound is returned (wrapped) when initdb or postgres cannot be found,
// so tests can skip or fail with the reason.
var ErrNotFound = errors.New("PostgreSQL server binaries not found")

// Superuser is the role initdb creates and Server.User names; its password
// is Server.Password.
const Superuser = "postgres"

// Files a server keeps in its directory, and folders in os.TempDir.
const (
	dataDir      = "data"
	logFile      = "postgres.log"
	portFile     = "port"
	passwordFile = "password"
	// ownerFile, in a relocated cluster's folder, names the Dir whose
	// data link points there.
	ownerFile = "owner"
	// tempPrefix names the directories Start makes when given no Dir.
	tempPrefix = "upshift-postgres-"
	// runPrefix names the folders of clusters relocated for the postgres
	// user (see the package comment). Not a tempPrefix match: those are
	// swept by another rule.
	runPrefix = "upshift-pgrun-"
)

// Options describe the server to run. Zero values get the defaults
// documented per field.
type Options struct {
	// BinDir holds initdb and postgres. Default: the newest
	// /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else
	// the directory of initdb on PATH.
	BinDir string
	// Dir holds the cluster (Dir/data), the unix socket, the log
	// (Dir/postgres.log) and the password (Dir/password). Default: a fresh
	// temporary directory, removed by Stop. A Dir whose data directory
	// already holds a cluster is started as it is, without initdb.
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
	// User is the superuser, "postgres"; Password is its password ("" for
	// a cluster made before passwords, which trusts loopback).
	User     string
	Password string
	// Dir holds the log, the password and the cluster (or a link to it).
	Dir string
	// DataDir is the cluster's data directory as the server names it:
	// Dir/data, or the folder Dir/data links to.
	DataDir string
	// SocketDir is the unix socket's directory (DataDir), or "" when its
	// path is too long for a socket and the server listens on TCP only.
	SocketDir string
	// LogFile is the server's stderr.
	LogFile string
	// BinDir holds the binaries that run it.
	BinDir string

	run     string            // DataDir's parent: Dir, or a relocated folder
	tmp     *dbserver.TempDir // the directory Start made, removed by Stop
	p       *proc
	mu      sync.Mutex // serialises Stop
	stopped bool
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// DSN is a pgx URL reaching database db as the superuser, e.g.
// "postgres://postgres:PASSWORD@127.0.0.1:40123/db?sslmode=disable". An
// empty db is the maintenance database "postgres". It holds the password:
// redact it before showing it.
func (s *Server) DSN(db string) string { return dsn(s.User, s.Password, s.Host, s.Port, db) }

// Log returns what the server has written to its log.
func (s *Server) Log() string {
	b, _ := dbserver.ReadFile(s.LogFile)
	return string(b)
}

// PID is the postmaster's pid.
func (s *Server) PID() int { return s.p.cmd.Process.Pid }

// Done is closed when the postmaster has exited.
func (s *Server) Done() <-chan struct{} { return s.p.done }

func dsn(usr, password, host string, port int, db string) string {
	if db == "" {
		db = "postgres"
	}
	u := url.URL{Scheme: "postgres", User: url.User(usr), Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	if password != "" {
		u.User = url.UserPassword(usr, password)
	}
	return u.String()
}

// Start creates (unless Dir already holds one) and starts a cluster and
// returns once it accepts connections. ctx bounds the start only: the
// server runs until Stop. If this process dies first, the kernel stops the
// server (Linux; immediate shutdown) so no orphan outlives a crashed test,
// and a later Start removes the directory.
func Start(ctx context.Context, o Options) (*Server, error) {
	ctx, cancel := o.deadline(ctx)
	defer cancel()
	sweep()
	dir := o.Dir
	var tmp *dbserver.TempDir
	if dir == "" {
		var err error
		// Not t.TempDir-style nesting: os.TempDir is searchable by the
		// postgres user, a root-owned 0700 parent would not be.
		if tmp, err = dbserver.MkdirTemp(tempPrefix); err != nil {
			return nil, err
		}
		dir = tmp.Path
	}
	s, err := start(ctx, o, dir)
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

func start(ctx context.Context, o Options, dir string) (*Server, error) {
	c, err := prepare(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	p, port, err := c.launch(ctx, o.Port, foregroundAttr())
	if err != nil {
		return nil, err
	}
	return &Server{Host: "127.0.0.1", Port: port, User: Superuser, Password: c.password, Dir: c.dir, DataDir: c.data,
		SocketDir: c.socketDir(port), LogFile: c.log, BinDir: c.bin, run: c.run, p: p}, nil
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
	if s.tmp != nil {
		for _, d := range []string{s.Dir, s.run} {
			if rerr := os.RemoveAll(d); err == nil {
				err = rerr
			}
		}
		s.tmp.Release()
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

// freePort is dbserver.FreePort; a test replaces it to provoke a port
// collision.
var freePort = dbserver.FreePort

// cluster is a data directory ready to start: binaries found, owner and
// permissions settled, initdb done.
type cluster struct {
	bin, dir, log string
	// run holds data: dir, or a folder of root's in the temporary folder
	// when the postgres user cannot reach dir.
	run, data string
	password  string
	cred      *syscall.Credential // nil: run as ourselves
	home      string
	settings  map[string]string
}

// prepare finds the binaries, creates dir, hands it (or a folder it
// reaches) to the postgres user when we are root, and runs initdb unless
// the cluster exists.
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
	c := &cluster{bin: bin, dir: dir, run: dir, log: filepath.Join(dir, logFile), settings: o.Settings}
	if os.Geteuid() == 0 {
		if err := c.runAsPostgres(); err != nil {
			return nil, err
		}
	}
	c.data = filepath.Join(c.run, dataDir)
	pwPath := filepath.Join(dir, passwordFile)
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); err == nil {
		c.password = dbserver.ReadPassword(pwPath)
		return c, nil
	}
	if c.password, err = dbserver.Password(pwPath); err != nil {
		return nil, err
	}
	// initdb reads the password from a file, as the postgres user, who may
	// not reach dir: a copy next to the cluster (in a folder of root's when
	// we are root), removed once read.
	pwfile := filepath.Join(c.run, ".initdb-password")
	if err := c.writeFile(pwfile, c.password+"\n"); err != nil {
		return nil, err
	}
	defer os.Remove(pwfile)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", c.data, "-U", Superuser, "--auth=scram-sha-256", "--pwfile="+pwfile, "-E", "UTF8", "--locale=C",
		// Nothing here must survive a power cut: skip the fsync of every file.
		"--no-sync")
	c.setup(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("postgresd: initdb -D %s: %v: %s", c.data, err, dbserver.LastLines(string(out), 5))
	}
	return c, nil
}

// writeFile writes a file only the server's user may read: made afresh,
// following no link, and given to that user through the open file.
func (c *cluster) writeFile(path, content string) error {
	f, err := dbserver.Create(path, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil && c.cred != nil {
		err = f.Chown(int(c.cred.Uid), int(c.cred.Gid))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// runAsPostgres makes the cluster run as the OS user postgres: PostgreSQL
// refuses root. Dir must be root's (it is refused otherwise, never taken
// from its owner) and stays so; Dir/data becomes the postgres user's when
// that user can reach it, otherwise the cluster lives in a folder of
// root's that the user can reach (relocate). No folder above Dir is
// changed.
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
	// Before anything in Dir is trusted: root writes the password, the
	// port and the log there.
	if err := ownDir(c.dir, 0); err != nil {
		return err
	}
	link := filepath.Join(c.dir, dataDir)
	if st, err := os.Lstat(link); err == nil && st.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(link)
		if err != nil {
			return err
		}
		run, err := relocated(c.dir, target)
		if err == nil {
			c.run = run
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// Its folder is gone (a boot emptied the temporary folder): a
		// fresh cluster in a fresh folder.
		if err := os.Remove(link); err != nil {
			return err
		}
		return c.relocate(uid, gid)
	}
	if err := reachable(c.dir, uid, gid); err != nil {
		if _, serr := os.Lstat(link); serr == nil {
			return fmt.Errorf("postgresd: the cluster in %s cannot be started: %w", link, err)
		}
		return c.relocate(uid, gid)
	}
	// The postgres user may pass through Dir to its data, no more.
	if err := ownDir(c.dir, 0o711); err != nil {
		return err
	}
	return giveDir(link, uid, gid)
}

// ownDir checks, through the open directory, that dir is this (effective)
// user's, refusing it otherwise (its owner is named), and sets its mode to
// perm, or when perm is 0 takes away the write permission of group and
// others.
func ownDir(dir string, perm os.FileMode) error {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("postgresd: cannot tell who owns %s", dir)
	}
	if int(sys.Uid) != os.Geteuid() {
		name := strconv.Itoa(int(sys.Uid))
		if u, err := user.LookupId(name); err == nil {
			name = u.Username + " (uid " + name + ")"
		} else {
			name = "uid " + name
		}
		return fmt.Errorf("postgresd: %s belongs to %s, not to root, who starts the cluster and writes its password there; choose a Dir of root's (or start it as that user)", dir, name)
	}
	if perm == 0 {
		perm = st.Mode().Perm() &^ 0o022
	}
	if st.Mode().Perm() != perm {
		return f.Chmod(perm)
	}
	return nil
}

// relocated returns the relocated cluster folder of dir that dir/data
// links to (target): a real directory directly in the temporary folder,
// named runPrefix*, of this (effective) user, not writable by group or
// others, whose owner file names dir. An error wrapping os.ErrNotExist
// when that folder is gone; any other folder is refused.
func relocated(dir, target string) (string, error) {
	run := filepath.Dir(target)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("postgresd: %s links to %s, which is not a relocated cluster folder of %s (%s); remove the link to start afresh", filepath.Join(dir, dataDir), target, dir, why)
	}
	if !filepath.IsAbs(target) || filepath.Clean(target) != filepath.Join(run, dataDir) ||
		filepath.Dir(run) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(run), runPrefix) {
		return bad("not " + filepath.Join(os.TempDir(), runPrefix+"*", dataDir))
	}
	st, err := os.Lstat(run)
	if errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return bad(err.Error())
	}
	if !st.IsDir() {
		return bad("not a directory")
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return bad("not root's")
	}
	if st.Mode().Perm()&0o022 != 0 {
		return bad("writable by others")
	}
	if !ownedBy(run, dir) {
		return bad("its owner file does not name it")
	}
	return run, nil
}

// giveDir makes the data directory at path (mode 0700) and gives it to
// uid/gid, through the open directory. One that exists already is left as
// it is: it holds a cluster, or a start's that failed.
func giveDir(path string, uid, gid int) error {
	err := os.Mkdir(path, 0o700)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chown(uid, gid); err != nil {
		return err
	}
	return f.Chmod(0o700)
}

// owner is the Dir named by the owner file of the relocated cluster
// folder run, or "".
func owner(run string) string {
	b, err := dbserver.ReadFile(filepath.Join(run, ownerFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ownedBy reports whether the owner file of the relocated cluster folder
// run names dir: the same directory (os.SameFile), however spelled.
func ownedBy(run, dir string) bool {
	o := owner(run)
	if o == "" {
		return false
	}
	a, err1 := os.Stat(o)
	b, err2 := os.Stat(dir)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// relocate puts the cluster in a fresh folder of root's in the temporary
// folder (mode 0711: the postgres user may pass through it to the data
// directory, which is that user's), linked from Dir/data and naming Dir
// in its owner file, so that a sweep can tell when Dir has gone.
func (c *cluster) relocate(uid, gid int) error {
	run, err := os.MkdirTemp("", runPrefix) // 0700
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = os.RemoveAll(run)
		return err
	}
	if err := reachable(run, uid, gid); err != nil {
		return fail(fmt.Errorf("postgresd: the postgres user can reach neither %s nor the temporary folder (choose a Dir or TMPDIR it can reach): %w", c.dir, err))
	}
	if err := dbserver.WriteFile(filepath.Join(run, ownerFile), []byte(c.dir+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if err := ownDir(run, 0o711); err != nil {
		return fail(err)
	}
	if err := giveDir(filepath.Join(run, dataDir), uid, gid); err != nil {
		return fail(err)
	}
	if err := os.Symlink(filepath.Join(run, dataDir), filepath.Join(c.dir, dataDir)); err != nil {
		return fail(err)
	}
	c.run = run
	return nil
}

// reachable says whether uid/gid (without supplementary groups) may search
// every directory above dir, and if not, which one stops it.
func reachable(dir string, uid, gid int) error {
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
		var can bool
		switch {
		case int(st.Uid) == uid:
			can = perm&0o100 != 0
		case int(st.Gid) == gid:
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return fmt.Errorf("the postgres user cannot enter %s (mode %v)", p, perm)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// sweep removes what test binaries that panicked or were killed left in
// the temporary folder: Start's directories whose maker has exited, and
// relocated clusters whose Dir is gone, when their server is not running.
func sweep() {
	dbserver.Sweep(tempPrefix, func(dir string) bool {
		return dbserver.Abandoned(dir) && !serving(realData(filepath.Join(dir, dataDir)))
	})
	dbserver.Sweep(runPrefix, orphaned)
}

// orphaned reports whether the relocated cluster in run is no Dir's any
// more (nothing links to it) and not running. A fresh folder is spared: it
// may be linked a moment from now.
func orphaned(run string) bool {
	if !dbserver.Stale(run) {
		return false
	}
	data := filepath.Join(run, dataDir)
	b, err := dbserver.ReadFile(filepath.Join(run, ownerFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false // not ours to judge
	}
	if err == nil {
		// Dir/data still leads here (the same directory, however spelled).
		linked, err1 := os.Stat(filepath.Join(strings.TrimSpace(string(b)), dataDir))
		here, err2 := os.Lstat(data)
		if err1 == nil && err2 == nil && os.SameFile(linked, here) {
			return false
		}
	}
	return !serving(data)
}

// realData is data with symbolic links resolved, as the server knows it.
func realData(data string) string {
	if r, err := filepath.EvalSymlinks(data); err == nil {
		return r
	}
	return data
}

// serving reports whether the postmaster.pid of the cluster in data (its
// real path) names a live postmaster of that cluster.
func serving(data string) bool {
	return ours(readPid(filepath.Join(data, "postmaster.pid")), data)
}

// readPid is the pid on the first line of the file at path (the
// postmaster.pid in a data directory the postgres user owns), or 0: read
// through dbserver.ReadFile, so that a link or a FIFO put there leads root
// nowhere.
func readPid(path string) int {
	b, err := dbserver.ReadFile(path)
	if err != nil {
		return 0
	}
	return procfs.ParsePid(b)
}

// ours reports whether pid is a live postmaster serving the cluster in
// data (its real path): a program named postgres given -D data, or
// working in data, as a postmaster does. A stale postmaster.pid may name a
// pid that is now any program, the machine's own postmaster included.
func ours(pid int, data string) bool {
	p, ok := procfs.Read(pid)
	if !ok || !p.Live() || len(p.Args) == 0 || filepath.Base(p.Args[0]) != "postgres" {
		return false
	}
	for i := 1; i+1 < len(p.Args); i++ {
		if p.Args[i] == "-D" && filepath.Clean(p.Args[i+1]) == data {
			return true
		}
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	return err == nil && cwd == data
}

// setup gives a server program its user, directory and environment.
func (c *cluster) setup(cmd *exec.Cmd) {
	cmd.Dir = c.run
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

// socketDir is the unix socket's directory for port, the data directory
// (the only folder the postgres user may write in when we are root), or ""
// when the socket path would exceed the 107 bytes a unix socket path may
// have.
func (c *cluster) socketDir(port int) string {
	if len(c.data)+len("/.s.PGSQL.")+len(strconv.Itoa(port)) > 107 || strings.ContainsAny(c.data, "\", ") {
		return ""
	}
	return c.data
}

// args are the server's command line for port. Settings go here rather than
// into postgresql.conf so a reused cluster never runs with stale ones.
func (c *cluster) args(port int) []string {
	set := [][2]string{
		{"port", strconv.Itoa(port)},
		{"listen_addresses", "127.0.0.1"},
		// Inside the cluster, never /var/run/postgresql where the
		// machine's server keeps its socket.
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
	logf, err := dbserver.OpenLog(c.log)
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
		log := dbserver.LogSince(c.log, offset)
		collided = strings.Contains(log, "Address already in use")
		return nil, collided, fmt.Errorf("%w; log %s: %s", err, c.log, dbserver.LastLines(log, 5))
	}
	return p, false, nil
}

// waitReady polls until the server on port accepts a connection and is
// ours (its data_directory is c.data, not another server's that got the
// port), or exits, or ctx ends.
func (c *cluster) waitReady(ctx context.Context, p *proc, port int) error {
	cfg, err := pgx.ParseConfig(dsn(Superuser, c.password, "127.0.0.1", port, ""))
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
