package postgresd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/postgres/postgresd"
)

// limit bounds every test: initdb plus start takes about a second.
const limit = 90 * time.Second

func needPostgres(t *testing.T) context.Context {
	t.Helper()
	if !postgresd.Available() {
		t.Skip("PostgreSQL server binaries are not installed (run .ci/setup)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}

func connect(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// procField is field n (1-based, after the command) of /proc/pid/stat.
func procField(t *testing.T, pid, n int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[n-3]
}

func TestStartConnectStop(t *testing.T) {
	ctx := needPostgres(t)
	s, err := postgresd.Start(ctx, postgresd.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })

	assert.Equal(t, "127.0.0.1", s.Host)
	assert.NotEqual(t, 5432, s.Port, "never the machine's server")
	assert.Equal(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(s.Port)+"/app?sslmode=disable", s.DSN("app"))
	assert.Equal(t, s.DSN("postgres"), s.DSN(""))

	c := connect(ctx, t, s.DSN("postgres"))
	_, err = c.Exec(ctx, "CREATE TABLE items(id int primary key, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
	require.NoError(t, err)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n))
	assert.Equal(t, 100, n)
	for setting, want := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.Dir,
		"data_directory":          s.DataDir,
		"fsync":                   "off",
		"current_user":            "postgres",
	} {
		var got string
		q := "SHOW " + setting
		if setting == "current_user" {
			q = "SELECT current_user"
		}
		require.NoError(t, c.QueryRow(ctx, q).Scan(&got))
		assert.Equal(t, want, got, setting)
	}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses root: the server runs as the postgres user.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(s.PID()) + "/status")
		require.NoError(t, err)
		assert.NotRegexp(t, `(?m)^Uid:\s+0\s`, string(b))
	}
	c.Close(ctx)

	require.NoError(t, s.Stop())
	require.NoError(t, s.Stop(), "a second Stop is harmless")
	_, err = os.Stat(s.Dir)
	assert.True(t, os.IsNotExist(err), "Stop removes the directory Start made: %v", err)
	assert.False(t, listening(s.Addr()))
	select {
	case <-s.Done():
	default:
		t.Fatal("the postmaster has not exited")
	}
}

// A given Dir is kept, and started again as it is: the data survives. As
// root this also covers a Dir whose parents (t.TempDir's) are root's 0700
// directories.
func TestGivenDirIsKeptAndRestarted(t *testing.T) {
	ctx := needPostgres(t)
	dir := filepath.Join(t.TempDir(), "pg")
	s, err := postgresd.Start(ctx, postgresd.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	c := connect(ctx, t, s.DSN(""))
	_, err = c.Exec(ctx, "CREATE TABLE kept(id int)")
	require.NoError(t, err)
	c.Close(ctx)
	require.NoError(t, s.Stop())
	assert.FileExists(t, filepath.Join(dir, "data", "PG_VERSION"))
	assert.Contains(t, s.Log(), "database system is shut down")

	s2, err := postgresd.Start(ctx, postgresd.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Stop() })
	c = connect(ctx, t, s2.DSN(""))
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n))
	c.Close(ctx)
	require.NoError(t, s2.Stop())
}

// A port someone else holds is an error that says so, soon, when the port
// was asked for (a port picked free is picked again instead).
func TestTakenPortIsAClearError(t *testing.T) {
	ctx := needPostgres(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = postgresd.Start(ctx, postgresd.Options{Port: l.Addr().(*net.TCPAddr).Port})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Address already in use")
	assert.NoError(t, ctx.Err(), "failed at once, not at the deadline")
}

func TestMissingBinariesAreAClearError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "no-such-bin")
	dir := filepath.Join(t.TempDir(), "pg")
	_, err := postgresd.Start(ctx, postgresd.Options{BinDir: bin, Dir: dir})
	require.Error(t, err)
	assert.True(t, errors.Is(err, postgresd.ErrNotFound), "%v", err)
	assert.Contains(t, err.Error(), "initdb")
	assert.Contains(t, err.Error(), bin)
	assert.NoDirExists(t, dir, "nothing is made before the binaries are found")

	_, err = postgresd.FindBin(bin)
	assert.ErrorIs(t, err, postgresd.ErrNotFound)
}

// helperDirEnv makes TestDetachedHelperProcess start a detached server in
// the directory it names and exit: the "other process" of the test below.
const helperDirEnv = "UPSHIFT_POSTGRESD_HELPER_DIR"

func TestDetachedHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestDetachedOutlivesItsStarter")
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if _, err := postgresd.StartDetached(ctx, dir); err != nil {
		t.Fatal(err)
	}
}

// A detached server outlives the process that started it, in a session of
// its own, and is reached and stopped given only its directory; started
// again it keeps its data and its port.
func TestDetachedOutlivesItsStarter(t *testing.T) {
	ctx := needPostgres(t)
	dir := filepath.Join(t.TempDir(), "lab-postgres")
	t.Cleanup(func() { _ = postgresd.DetachedAt(dir).Stop() })

	starter := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDetachedHelperProcess$", "-test.count=1")
	starter.Env = append(os.Environ(), helperDirEnv+"="+dir)
	out, err := starter.CombinedOutput()
	require.NoError(t, err, "%s", out)

	d := postgresd.DetachedAt(dir)
	require.True(t, d.Running(), "running after its starter (pid %d) exited", starter.Process.Pid)
	require.NotZero(t, d.Port)
	assert.NotEqual(t, 5432, d.Port)
	pid := d.PID()
	assert.Equal(t, strconv.Itoa(pid), procField(t, pid, 6), "a session of its own")
	assert.NotEqual(t, strconv.Itoa(starter.Process.Pid), procField(t, pid, 4), "adopted once its starter exited")
	c := connect(ctx, t, d.DSN(""))
	_, err = c.Exec(ctx, "CREATE TABLE kept(id int); INSERT INTO kept VALUES (1)")
	require.NoError(t, err)
	c.Close(ctx)

	require.NoError(t, postgresd.DetachedAt(dir).Stop())
	assert.False(t, postgresd.DetachedAt(dir).Running())
	assert.False(t, listening(d.Addr()))
	assert.Contains(t, d.Log(), "database system is shut down")
	require.NoError(t, postgresd.DetachedAt(dir).Stop(), "stopping a stopped server is no error")

	again, err := postgresd.StartDetached(ctx, dir)
	require.NoError(t, err)
	assert.Equal(t, d.Port, again.Port, "the port is kept")
	c = connect(ctx, t, again.DSN(""))
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n))
	assert.Equal(t, 1, n)
	c.Close(ctx)
	same, err := postgresd.StartDetached(ctx, dir)
	require.NoError(t, err, "a running server is returned as it is")
	assert.Equal(t, again.PID(), same.PID())
	require.NoError(t, again.Stop())
	assert.False(t, again.Running())
}

// A free port that another process takes before the server binds it is
// replaced by another, not reported as an error.
func TestPortTakenMeanwhileIsRetried(t *testing.T) {
	ctx := needPostgres(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	var picks int
	restore := postgresd.SetFreePort(func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return postgresd.FreePort()
	})
	defer restore()
	s, err := postgresd.Start(ctx, postgresd.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.Equal(t, 2, picks)
	assert.NotEqual(t, taken, s.Port)
	assert.Contains(t, s.Log(), "Address already in use", "the first attempt collided")
	c := connect(ctx, t, s.DSN(""))
	require.NoError(t, c.Ping(ctx))
	c.Close(ctx)
	require.NoError(t, s.Stop())
}
