package mariadbd

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// testTimeout bounds each test's install, start and queries.
const testTimeout = 2 * time.Minute

func needMariaDB(t *testing.T) {
	t.Helper()
	if !Available() {
		t.Skip("mariadbd or mariadb-install-db is not installed (apt install mariadb-server)")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// exec runs statements on dsn, each bounded by ctx.
func execAll(ctx context.Context, t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	defer db.Close()
	for _, q := range stmts {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
}

func queryInt(ctx context.Context, t *testing.T, dsn, q string) int {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRowContext(ctx, q).Scan(&n), q)
	return n
}

// refused reports whether nothing accepts connections on addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

func TestStartConnectStop(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	t0 := time.Now()
	s, err := Start(ctx, Options{})
	require.NoError(t, err)
	t.Logf("install + start: %s", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Stop() })

	assert.Equal(t, "127.0.0.1", s.Host)
	assert.Equal(t, "root", s.User)
	assert.NotEqual(t, 3306, s.Port, "never the machine's server")
	assert.Regexp(t, `^[0-9a-f]{32}$`, s.Password)
	assert.Equal(t, fmt.Sprintf("root:%s@tcp(127.0.0.1:%d)/shop", s.Password, s.Port), s.DSN("shop"))
	assert.DirExists(t, s.DataDir)
	st, err := os.Stat(filepath.Join(s.Dir, "password"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the password is for its owner only")
	assert.NoFileExists(t, filepath.Join(s.Dir, "init.sql"), "the init file with the password is gone once read")

	// Another local user knows the port but not the password: no way in,
	// over TCP or the socket, as root or anonymously.
	for _, bad := range []string{
		fmt.Sprintf("root@tcp(%s)/", s.Addr()),
		fmt.Sprintf("root:wrong@tcp(%s)/", s.Addr()),
		fmt.Sprintf("nobody@tcp(%s)/", s.Addr()),
		fmt.Sprintf("root@unix(%s)/", s.Socket),
		fmt.Sprintf("@unix(%s)/", s.Socket),
	} {
		assert.ErrorContains(t, login(ctx, bad), "Access denied", bad)
	}
	assert.NoError(t, login(ctx, fmt.Sprintf("root:%s@unix(%s)/", s.Password, s.Socket)), "root's password works on the socket too")

	execAll(ctx, t, s.DSN(""), "CREATE DATABASE shop")
	execAll(ctx, t, s.DSN("shop"),
		"CREATE TABLE items (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB",
		"INSERT INTO items VALUES (1, 'a'), (2, 'b')")
	assert.Equal(t, 2, queryInt(ctx, t, s.DSN("shop"), "SELECT count(*) FROM items"))

	db, err := sql.Open("mysql", s.DSN(""))
	require.NoError(t, err)
	var datadir string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&datadir))
	db.Close()
	assert.Equal(t, s.DataDir+"/", datadir, "the server uses its own datadir, not the machine's")

	pid := s.PID()
	t1 := time.Now()
	require.NoError(t, s.Stop())
	t.Logf("stop: %s", time.Since(t1).Round(time.Millisecond))
	assert.NoDirExists(t, s.Dir, "Stop removes the directory Start made")
	assert.True(t, refused(s.Addr()), "nothing listens on %s after Stop", s.Addr())
	assert.Error(t, syscall.Kill(pid, 0), "mariadbd pid %d is gone", pid)
	require.NoError(t, s.Stop(), "Stop twice is fine")
}

// login logs in with dsn.
func login(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

func TestGivenDirIsKeptAndReused(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	t.Chdir(t.TempDir())
	dir := "kept" // relative, to the test's working directory
	first, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Stop() })
	assert.True(t, filepath.IsAbs(first.DataDir))
	execAll(ctx, t, first.DSN(""), "CREATE DATABASE kept")
	require.NoError(t, first.Stop())
	assert.DirExists(t, first.DataDir, "a given Dir is not removed")
	assert.FileExists(t, first.LogFile)

	s, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.Equal(t, first.Password, s.Password, "the password is kept")
	assert.Equal(t, 1, queryInt(ctx, t, s.DSN(""), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'kept'"),
		"the second start reuses the installed datadir")
	require.NoError(t, s.Stop())

	// A datadir from before passwords (none kept) gets one at its next
	// start.
	require.NoError(t, os.Remove(filepath.Join(s.Dir, "password")))
	third, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = third.Stop() })
	assert.NotEqual(t, s.Password, third.Password)
	assert.Equal(t, 1, queryInt(ctx, t, third.DSN(""), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'kept'"))
	assert.ErrorContains(t, login(ctx, dsn(User, s.Password, third.Addr(), "")), "Access denied", "the old password no longer works")
}

func TestPortCollision(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	// A port picked free but taken before mariadbd binds it is retried.
	picks := 0
	pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return takenPort, nil
		}
		return dbserver.FreePort()
	}
	t.Cleanup(func() { pickPort = dbserver.FreePort })
	dir := t.TempDir()
	s, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.Equal(t, 2, picks)
	assert.NotEqual(t, takenPort, s.Port)
	assert.Equal(t, 1, queryInt(ctx, t, s.DSN(""), "SELECT 1"))
	require.NoError(t, s.Stop())

	// A port the caller chose is not silently replaced. (Same Dir: no
	// second install.)
	_, err = Start(ctx, Options{Dir: dir, Port: takenPort})
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("port %d: port already in use", takenPort))
}

func TestMissingBinaries(t *testing.T) {
	needMariaDB(t) // each case names one missing program, finding the other
	ctx := testCtx(t)
	_, err := Start(ctx, Options{Mariadbd: "/nonexistent/mariadbd"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `server "/nonexistent/mariadbd"`)

	_, err = Start(ctx, Options{InstallDB: "/nonexistent/mariadb-install-db"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `installer "/nonexistent/mariadb-install-db"`)

	_, err = startDetached(ctx, Options{Dir: t.TempDir(), Mariadbd: "no-such-mariadbd"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `server "no-such-mariadbd"`)

	_, err = findProgram("server", "", []string{"/nonexistent/a", "no-such-b"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "none of /nonexistent/a, no-such-b found (apt install mariadb-server)")
}

func TestStartTimeoutLeavesNoProcess(t *testing.T) {
	needMariaDB(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Start(ctx, Options{Dir: dir})
	require.Error(t, err, "install + start within 300ms")
	assert.Contains(t, err.Error(), "context deadline exceeded")
	datadir := "--datadir=" + pathsIn(dir).data
	require.Eventually(t, func() bool { return len(serving(datadir)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"no installer or server left for %s: %v", dir, serving(datadir))
}

// serving lists the live processes with arg on their command line.
func serving(arg string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := procfs.Read(pid); ok && p.Live() && ours(p.Args, strings.TrimPrefix(arg, "--datadir=")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestDetachedStartStopFromDir(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	d, err := StartDetached(ctx, dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = DetachedAt(dir).Stop() })

	again := DetachedAt(dir) // all another process would have
	assert.Equal(t, d.Port, again.Port, "port read back from %s", again.PortFile)
	assert.True(t, again.Running())
	assert.Equal(t, d.PID(), again.PID())
	execAll(ctx, t, again.DSN(""), "CREATE DATABASE lab", "CREATE TABLE lab.t (id INT PRIMARY KEY)", "INSERT INTO lab.t VALUES (7)")

	same, err := StartDetached(ctx, dir)
	require.NoError(t, err, "starting a running server returns it")
	assert.Equal(t, d.PID(), same.PID())

	require.NoError(t, again.Stop())
	assert.False(t, again.Running())
	assert.True(t, refused(again.Addr()))
	assert.NoError(t, again.Stop(), "stopping a stopped server is fine")
	assert.Contains(t, again.Log(), "Shutdown complete", "a clean shutdown, in the log in dir")

	// The kept port taken by another process: a clear error, not a server
	// on another port that the DSNs handed out do not name.
	taken, err := net.Listen("tcp", again.Addr())
	require.NoError(t, err)
	_, err = StartDetached(ctx, dir)
	taken.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("port %d is the one kept in %s", d.Port, d.PortFile))
	assert.False(t, DetachedAt(dir).Running())

	d2, err := StartDetached(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, d.Port, d2.Port, "a restart keeps the port")
	assert.Equal(t, d.Password, d2.Password, "and the password")
	assert.Equal(t, 7, queryInt(ctx, t, d2.DSN("lab"), "SELECT id FROM t"), "and the data")
	assert.ErrorContains(t, DetachedAt(dir).Remove(), "is running; stop it first")
	assert.True(t, DetachedAt(dir).Running(), "Remove refused, and left the server alone")
	require.NoError(t, DetachedAt(dir).Stop())
	require.NoError(t, DetachedAt(dir).Remove())
	assert.NoDirExists(t, dir, "Remove takes the directory, datadir and all")
}

// Start removes the directories of earlier Starts whose process has gone
// (a panicked or killed test binary), unless their server still runs; a
// directory another live process holds is never touched.
func TestStartSweepsLeftovers(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	crashed, err := dbserver.MkdirTemp(tempPrefix)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(crashed.Path, "data", "mysql"), 0o700))
	crashed.Release() // its process exited
	held, err := dbserver.MkdirTemp(tempPrefix)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(held.Path); held.Release() })

	running, err := Start(ctx, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = running.Stop() })
	assert.NoDirExists(t, crashed.Path, "swept by the Start after it")
	assert.DirExists(t, held.Path, "held by a live process")

	running.tmp.Release() // as if its process had gone, but its server runs
	s, err := Start(ctx, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.DirExists(t, running.Dir, "its server still runs")
	assert.Equal(t, 1, queryInt(ctx, t, running.DSN(""), "SELECT 1"))
}

func TestDetachedStalePidFile(t *testing.T) {
	d := DetachedAt(t.TempDir())
	// Our own pid: alive, but not a mariadbd of this directory.
	require.NoError(t, os.WriteFile(d.PidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600))
	assert.Equal(t, 0, d.PID(), "a reused pid is not taken for the server")
	assert.False(t, d.Running())
	assert.NoError(t, d.Stop(), "and gets no signal")

	// A program that is no mariadbd, even one naming the datadir.
	other := exec.Command("sh", "-c", "sleep 60; true", "--datadir="+d.DataDir)
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	require.Eventually(t, func() bool {
		p, ok := procfs.Read(other.Process.Pid)
		return ok && len(p.Args) == 4 && ours(p.Args, d.DataDir)
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(d.PidFile, []byte(fmt.Sprintf("%d\n", other.Process.Pid)), 0o600))
	assert.Equal(t, 0, d.PID(), "not a mariadbd")
	require.NoError(t, d.Stop())
	assert.True(t, procfs.Alive(other.Process.Pid), "not signalled")

	require.NoError(t, d.Remove(), "a server that does not run is removed")
	assert.NoDirExists(t, d.Dir)
}

// A process without a command line (a kernel thread) named by a stale pid
// file is not the server: Stop does not signal it and wait for it, and
// Remove does not refuse.
func TestDetachedPidOfAKernelThread(t *testing.T) {
	assert.False(t, server(procfs.Proc{Pid: 2, State: 'S'}, "/x/data", ""), "no command line")
	assert.False(t, server(procfs.Proc{Pid: 9, State: 'Z'}, "/x/data", ""), "a zombie")
	assert.False(t, server(procfs.Proc{Pid: 9, State: 'S', Args: []string{"sh", "--datadir=/x/data"}}, "/x/data", ""), "not mariadbd")
	assert.True(t, server(procfs.Proc{Pid: 9, State: 'S', Args: []string{"/usr/sbin/mariadbd", "--datadir=/x/data"}}, "/x/data", ""))
	assert.True(t, server(procfs.Proc{Pid: 9, State: 'S', Args: []string{"mysqld", "--datadir=/x/data"}}, "/x/data", ""))

	kthread := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := procfs.Read(pid); ok && p.Live() && len(p.Args) == 0 {
			kthread = pid
			break
		}
	}
	if kthread == 0 {
		t.Skip("no kernel thread visible here (a container's own pid namespace?)")
	}
	d := DetachedAt(t.TempDir())
	require.NoError(t, os.WriteFile(d.PidFile, []byte(fmt.Sprintf("%d\n", kthread)), 0o600))
	assert.Equal(t, 0, d.PID(), "kernel thread %d", kthread)
	assert.False(t, d.Running())
	began := time.Now()
	require.NoError(t, d.Stop())
	assert.Less(t, time.Since(began), time.Second, "no wait for a kernel thread to exit")
	require.NoError(t, d.Remove())
	assert.NoDirExists(t, d.Dir)
}

// helperDirEnv makes the test binary, run again as a child, start a
// detached server in that directory and exit.
const helperDirEnv = "MARIADBD_TEST_DETACHED_DIR"

func TestHelperStartDetached(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("only run as the child of TestDetachedOutlivesStarter")
	}
	_, err := StartDetached(testCtx(t), dir)
	require.NoError(t, err)
}

func TestDetachedOutlivesStarter(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	t.Cleanup(func() { _ = DetachedAt(dir).Stop() })

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperStartDetached$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	starter := cmd.Process.Pid

	d := DetachedAt(dir)
	require.True(t, d.Running(), "the server outlives the process that started it")
	pid := d.PID()
	assert.Equal(t, pid, stat(pid, 3), "in its own session")
	assert.NotEqual(t, starter, stat(pid, 1), "adopted after its starter exited")
	assert.Equal(t, 1, queryInt(ctx, t, d.DSN(""), "SELECT 1"))

	require.NoError(t, d.Stop())
	assert.False(t, d.Running())
	assert.True(t, refused(d.Addr()))
}

// stat is field n after the command name in /proc/pid/stat (1 ppid,
// 3 session), or 0.
func stat(pid, n int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) <= n {
		return 0
	}
	v, _ := strconv.Atoi(f[n])
	return v
}

// A server whose binary is not named mariadbd or mysqld (Options.Mariadbd
// names a link, say) is still recognised, by the program file it runs:
// Remove refuses while it runs and Stop stops it.
func TestDetachedOtherBinaryName(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	bins, err := findBinaries(Options{}.withDefaults())
	require.NoError(t, err)
	link := filepath.Join(t.TempDir(), "dbserver")
	require.NoError(t, os.Symlink(bins.server, link))
	dir := t.TempDir()
	t.Cleanup(func() { _ = DetachedAt(dir).Stop() })
	d, err := startDetached(ctx, Options{Dir: dir, Mariadbd: link})
	require.NoError(t, err)
	pid := d.PID()
	require.NotZero(t, pid, "recognised by its program file")
	p, ok := procfs.Read(pid)
	require.True(t, ok)
	assert.Equal(t, "dbserver", filepath.Base(p.Args[0]))
	// A pid file that is a link is not followed, even to the right pid.
	kept := filepath.Join(t.TempDir(), "pid")
	require.NoError(t, os.Rename(d.PidFile, kept))
	require.NoError(t, os.Symlink(kept, d.PidFile))
	assert.Equal(t, 0, d.PID(), "a link is not followed")
	require.NoError(t, os.Rename(kept, d.PidFile))
	again := DetachedAt(dir)
	assert.True(t, again.Running())
	assert.Error(t, again.Remove(), "refused while it runs")
	assert.DirExists(t, dir)
	require.NoError(t, again.Stop())
	assert.False(t, procfs.Alive(pid))
	assert.False(t, again.Running())
}

// A pid file that is a FIFO is not read (nor blocked on).
func TestDetachedPidFileNotAFile(t *testing.T) {
	d := DetachedAt(t.TempDir())
	require.NoError(t, syscall.Mkfifo(d.PidFile, 0o600))
	done := make(chan int)
	go func() { done <- d.PID() }()
	select {
	case pid := <-done:
		assert.Equal(t, 0, pid)
	case <-time.After(5 * time.Second):
		t.Fatal("PID blocked on a FIFO")
	}
}
