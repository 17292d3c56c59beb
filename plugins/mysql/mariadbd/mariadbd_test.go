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

	"github.com/upshift-dev/upshift/plugins/internal/procfs"
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
	assert.Equal(t, fmt.Sprintf("root@tcp(127.0.0.1:%d)/shop", s.Port), s.DSN("shop"))
	assert.DirExists(t, s.DataDir)

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

func TestGivenDirIsKeptAndReused(t *testing.T) {
	needMariaDB(t)
	ctx := testCtx(t)
	t.Chdir(t.TempDir())
	dir := "kept" // relative, to the test's working directory
	s, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	assert.True(t, filepath.IsAbs(s.DataDir))
	execAll(ctx, t, s.DSN(""), "CREATE DATABASE kept")
	require.NoError(t, s.Stop())
	assert.DirExists(t, s.DataDir, "a given Dir is not removed")
	assert.FileExists(t, s.LogFile)

	s, err = Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.Equal(t, 1, queryInt(ctx, t, s.DSN(""), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'kept'"),
		"the second start reuses the installed datadir")
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
		return FreePort()
	}
	t.Cleanup(func() { pickPort = FreePort })
	dir := t.TempDir()
	s, err := Start(ctx, Options{Dir: dir})
	require.NoError(t, err)
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

	d2, err := StartDetached(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, d.Port, d2.Port, "a restart keeps the port while it is free")
	assert.Equal(t, 7, queryInt(ctx, t, d2.DSN("lab"), "SELECT id FROM t"), "and the data")
	require.NoError(t, DetachedAt(dir).Stop())
}

func TestDetachedStalePidFile(t *testing.T) {
	d := DetachedAt(t.TempDir())
	// Our own pid: alive, but not a mariadbd of this directory.
	require.NoError(t, os.WriteFile(d.PidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600))
	assert.Equal(t, 0, d.PID(), "a reused pid is not taken for the server")
	assert.False(t, d.Running())
	assert.NoError(t, d.Stop(), "and gets no signal")
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
