package postgresd_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/dbserver"
	"github.com/upshift-dev/upshift/internal/servers/postgresd"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
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
	assert.Regexp(t, `^[0-9a-f]{32}$`, s.Password)
	assert.Equal(t, "postgres://postgres:"+s.Password+"@127.0.0.1:"+strconv.Itoa(s.Port)+"/app?sslmode=disable", s.DSN("app"))
	assert.Equal(t, s.DSN("postgres"), s.DSN(""))
	st, err := os.Stat(filepath.Join(s.Dir, "password"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the password is for its owner only")

	// Another local user knows the port but not the password: no way in,
	// over TCP or the socket.
	for _, bad := range []string{
		"postgres://postgres@" + s.Addr() + "/postgres?sslmode=disable",
		"postgres://postgres:wrong@" + s.Addr() + "/postgres?sslmode=disable",
		"host=" + s.SocketDir + " port=" + strconv.Itoa(s.Port) + " user=postgres dbname=postgres",
	} {
		c, err := pgx.Connect(ctx, bad)
		if err == nil {
			c.Close(ctx)
		}
		assert.ErrorContains(t, err, "password", "%s", bad)
	}

	c := connect(ctx, t, s.DSN("postgres"))
	_, err = c.Exec(ctx, "CREATE TABLE items(id int primary key, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g")
	require.NoError(t, err)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n))
	assert.Equal(t, 100, n)
	for setting, want := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": s.DataDir,
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

// modes maps dir and each directory above it to its mode.
func modes(t *testing.T, dir string) map[string]os.FileMode {
	m := map[string]os.FileMode{}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		require.NoError(t, err)
		m[p] = st.Mode()
		if p == filepath.Dir(p) {
			return m
		}
	}
}

// A given Dir is kept, and started again as it is: the data survives. As
// root this also covers a Dir whose parents (t.TempDir's) are root's 0700
// directories, which the postgres user cannot enter: they stay as they
// are, and the cluster lives in a folder of that user's, linked from Dir
// and removed by a sweep once Dir is gone.
func TestGivenDirIsKeptAndRestarted(t *testing.T) {
	ctx := needPostgres(t)
	parent := t.TempDir()
	before := modes(t, parent)
	dir := filepath.Join(parent, "pg")
	s, err := postgresd.Start(ctx, postgresd.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	c := connect(ctx, t, s.DSN(""))
	_, err = c.Exec(ctx, "CREATE TABLE kept(id int); INSERT INTO kept VALUES (7)")
	require.NoError(t, err)
	c.Close(ctx)
	require.NoError(t, s.Stop())
	assert.FileExists(t, filepath.Join(dir, "data", "PG_VERSION"))
	assert.Contains(t, s.Log(), "database system is shut down")
	assert.Equal(t, before, modes(t, parent), "no directory above Dir is changed")

	// As root, a parent others cannot enter (t.TempDir's own) keeps the
	// postgres user out of Dir.
	relocated := false
	for _, m := range before {
		relocated = relocated || (os.Geteuid() == 0 && m.Perm()&0o001 == 0)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "data")); assert.NoError(t, err) {
		assert.Equal(t, relocated, fi.Mode()&os.ModeSymlink != 0, "Dir/data is a link exactly when the cluster was relocated")
	}
	if relocated {
		target, err := os.Readlink(filepath.Join(dir, "data"))
		require.NoError(t, err, "Dir/data links to the cluster")
		assert.Equal(t, s.DataDir, target)
		assert.True(t, strings.HasPrefix(filepath.Base(filepath.Dir(target)), postgresd.RunPrefix), target)
		assert.Equal(t, target, s.SocketDir)
	}

	s2, err := postgresd.Start(ctx, postgresd.Options{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Stop() })
	assert.Equal(t, s.DataDir, s2.DataDir)
	assert.Equal(t, s.Password, s2.Password)
	c = connect(ctx, t, s2.DSN(""))
	var got []int
	rows, err := c.Query(ctx, "SELECT id FROM kept")
	require.NoError(t, err)
	for rows.Next() {
		var id int
		require.NoError(t, rows.Scan(&id))
		got = append(got, id)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []int{7}, got, "the row written before the restart")
	c.Close(ctx)
	require.NoError(t, s2.Stop())

	if relocated {
		run := filepath.Dir(s.DataDir)
		old := time.Now().Add(-time.Hour)
		require.NoError(t, os.Chtimes(run, old, old))
		postgresd.Sweep()
		assert.DirExists(t, run, "kept while Dir links to it")
		require.NoError(t, os.RemoveAll(dir))
		postgresd.Sweep()
		assert.NoDirExists(t, run, "swept once Dir is gone")
	}
}

// A port someone else holds is an error that says so, soon, when the port
// was asked for (a port picked free is picked again instead).
func TestTakenPortIsAClearError(t *testing.T) {
	ctx := needPostgres(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	began := time.Now()
	_, err = postgresd.Start(ctx, postgresd.Options{Port: l.Addr().(*net.TCPAddr).Port})
	took := time.Since(began)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Address already in use")
	// initdb takes a second or two, the failed start much less; the
	// deadline is a minute.
	assert.Less(t, took, 15*time.Second, "failed at once, not at the deadline")
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
	t.Cleanup(func() {
		_ = postgresd.DetachedAt(dir).Stop()
		_ = postgresd.DetachedAt(dir).Remove()
	})

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
	assert.ErrorContains(t, again.Remove(), "is running; stop it first")
	require.NoError(t, again.Stop())
	assert.False(t, again.Running())

	// Remove takes the cluster too, wherever it lives (as root, in a folder
	// of the postgres user's when Dir is out of its reach).
	cluster := realPath(t, again.DataDir)
	require.NoError(t, again.Remove())
	assert.NoDirExists(t, dir)
	assert.NoDirExists(t, cluster)
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	require.NoError(t, err)
	return r
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
		return dbserver.FreePort()
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

// A postmaster.pid left by a killed server may name a pid that another
// program has since, even one named postgres (the machine's own
// postmaster, say): it is not taken for the server, and gets no signal.
func TestDetachedStalePidFile(t *testing.T) {
	d := postgresd.DetachedAt(t.TempDir())
	require.NoError(t, os.MkdirAll(d.DataDir, 0o700))
	other := exec.Command("sleep", "60")
	other.Args[0] = "postgres"
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	require.Eventually(t, func() bool {
		p, ok := procfs.Read(other.Process.Pid)
		return ok && len(p.Args) == 2 && p.Args[0] == "postgres"
	}, 5*time.Second, 10*time.Millisecond, "a process named postgres")
	require.NoError(t, os.WriteFile(filepath.Join(d.DataDir, "postmaster.pid"),
		[]byte(strconv.Itoa(other.Process.Pid)+"\n"+d.DataDir+"\n"), 0o600))

	assert.Equal(t, 0, d.PID())
	assert.False(t, d.Running())
	require.NoError(t, d.Stop())
	time.Sleep(100 * time.Millisecond)
	assert.True(t, procfs.Alive(other.Process.Pid), "the other process was not signalled")
}

// Start removes the directories of earlier Starts whose process has gone
// (a panicked or killed test binary), unless their server still runs; a
// directory another live process holds is never touched.
func TestStartSweepsLeftovers(t *testing.T) {
	ctx := needPostgres(t)
	crashed, err := dbserver.MkdirTemp("upshift-postgres-")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(crashed.Path, "data"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(crashed.Path, "data", "PG_VERSION"), []byte("15\n"), 0o600))
	crashed.Release() // its process exited
	held, err := dbserver.MkdirTemp("upshift-postgres-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(held.Path); held.Release() })

	running, err := postgresd.Start(ctx, postgresd.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = running.Stop() })
	assert.NoDirExists(t, crashed.Path, "swept by the Start after it")
	assert.DirExists(t, held.Path, "held by a live process")

	running.Release() // as if its process had gone, but its server runs
	s, err := postgresd.Start(ctx, postgresd.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assert.DirExists(t, running.Dir, "its server still runs")
	c := connect(ctx, t, running.DSN(""))
	require.NoError(t, c.Ping(ctx))
	c.Close(ctx)
}

// fileOwner is the uid owning path (not following a link).
func fileOwner(t *testing.T, path string) uint32 {
	t.Helper()
	st, err := os.Lstat(path)
	require.NoError(t, err)
	return st.Sys().(*syscall.Stat_t).Uid
}

// asPostgres runs a shell command as the postgres OS user.
func asPostgres(t *testing.T, script string) error {
	t.Helper()
	u, err := user.Lookup("postgres")
	require.NoError(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	return cmd.Run()
}

// Root writes files where the server's user (postgres, which the server's
// SQL can run programs as) could plant a link to a file of root's. Here
// links are planted at every file root writes in Dir: none is followed,
// and, as root, Dir stays root's and the postgres user can plant nothing
// in it, nor in a relocated cluster's folder; only the data directory is
// that user's.
func TestPlantedLinksAreNotFollowed(t *testing.T) {
	ctx := needPostgres(t)
	shadow := filepath.Join(t.TempDir(), "shadow")
	require.NoError(t, os.WriteFile(shadow, []byte("root:secret\n"), 0o640))
	unchanged := func() {
		t.Helper()
		b, err := os.ReadFile(shadow)
		require.NoError(t, err)
		assert.Equal(t, "root:secret\n", string(b), "the link's target is not written")
		st, err := os.Stat(shadow)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())
		assert.Equal(t, uint32(os.Geteuid()), st.Sys().(*syscall.Stat_t).Uid, "nor given away")
	}
	root := os.Geteuid() == 0
	// Reachable by the postgres user (a folder of mode 0711) or not
	// (t.TempDir's 0700 folders): Dir/data a directory, or a link to a
	// relocated cluster.
	searchable, err := os.MkdirTemp("", "upshift-test-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(searchable) })
	require.NoError(t, os.Chmod(searchable, 0o711))
	for name, parent := range map[string]string{"reachable": searchable, "relocated": t.TempDir()} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(parent, "pg")
			require.NoError(t, os.Mkdir(dir, 0o700))
			t.Cleanup(func() {
				_ = postgresd.DetachedAt(dir).Stop()
				_ = postgresd.DetachedAt(dir).Remove()
			})
			planted := []string{"password", "port", "postgres.log", ".initdb-password"}
			for _, f := range planted {
				require.NoError(t, os.Symlink(shadow, filepath.Join(dir, f)))
			}

			d, err := postgresd.StartDetached(ctx, dir)
			require.NoError(t, err)
			unchanged()
			assert.NotContains(t, d.Password, "secret")
			assert.Regexp(t, `^[0-9a-f]{32}$`, d.Password)
			c := connect(ctx, t, d.DSN(""))
			require.NoError(t, c.Ping(ctx))
			c.Close(ctx)
			for _, f := range []string{"password", "port", "postgres.log"} {
				st, err := os.Lstat(filepath.Join(dir, f))
				require.NoError(t, err)
				assert.True(t, st.Mode().IsRegular(), "%s replaced by a file: %v", f, st.Mode())
				assert.Equal(t, uint32(os.Geteuid()), st.Sys().(*syscall.Stat_t).Uid, f)
			}
			left, err := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
			require.NoError(t, err)
			assert.Empty(t, left, "no temporary file left")

			st, err := os.Lstat(d.DataDir)
			require.NoError(t, err)
			if !root {
				assert.True(t, st.IsDir(), "not root: nothing relocated")
			} else if name == "reachable" {
				assert.True(t, st.IsDir(), "Dir/data is a real directory: %v", st.Mode())
				// The cluster lives in Dir: the planted link where initdb's
				// password file goes was replaced, and that file removed.
				_, err := os.Lstat(filepath.Join(dir, ".initdb-password"))
				assert.ErrorIs(t, err, os.ErrNotExist, "the planted .initdb-password is replaced, then removed")
			} else {
				assert.True(t, st.Mode()&os.ModeSymlink != 0, "Dir/data links to a relocated cluster: %v", st.Mode())
			}

			if root {
				assert.Equal(t, uint32(0), fileOwner(t, dir), "Dir stays root's")
				data := realPath(t, d.DataDir)
				run := filepath.Dir(data)
				assert.Equal(t, uint32(0), fileOwner(t, run), "the cluster's folder is root's")
				assert.NotEqual(t, uint32(0), fileOwner(t, data), "the data directory is the postgres user's")
				// The probe can fail: where the postgres user may write (its
				// data directory), it plants a link.
				ok := filepath.Join(data, "probe")
				require.NoError(t, asPostgres(t, "ln -s "+shadow+" "+ok), "the postgres user can write its data directory")
				require.NoError(t, os.Remove(ok))
				for _, where := range []string{dir, run} {
					probe := filepath.Join(where, "probe")
					assert.Error(t, asPostgres(t, "ln -s "+shadow+" "+probe), "the postgres user cannot plant a link in %s", where)
					_, err := os.Lstat(probe)
					assert.ErrorIs(t, err, os.ErrNotExist)
				}
			}
			require.NoError(t, d.Stop())
			unchanged()
		})
	}
}

// As root, a Dir of another user is refused, not taken from its owner;
// and a Dir/data linking anywhere but to a relocated cluster folder of
// root's that names Dir (one the postgres user could change, say) is
// refused.
func TestRootRefusesDirsNotItsOwn(t *testing.T) {
	ctx := needPostgres(t)
	if os.Geteuid() != 0 {
		t.Skip("not root: nothing is handed to the postgres user")
	}
	pg, err := user.Lookup("postgres")
	require.NoError(t, err)
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)

	for _, who := range []int{uid, 1000} {
		dir := filepath.Join(t.TempDir(), "pg")
		require.NoError(t, os.Mkdir(dir, 0o755))
		require.NoError(t, os.Chown(dir, who, who))
		_, err := postgresd.StartDetached(ctx, dir)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not to root")
		st, err := os.Stat(dir)
		require.NoError(t, err)
		assert.Equal(t, uint32(who), st.Sys().(*syscall.Stat_t).Uid, "left its owner's")
		assert.Equal(t, os.FileMode(0o755), st.Mode().Perm(), "and its mode")
	}

	// A folder like a relocated cluster's, naming Dir, but the postgres
	// user's (who could swap what is in it).
	dir := filepath.Join(t.TempDir(), "pg")
	require.NoError(t, os.Mkdir(dir, 0o700))
	theirs, err := os.MkdirTemp("", postgresd.RunPrefix)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(theirs) })
	require.NoError(t, os.WriteFile(filepath.Join(theirs, "owner"), []byte(dir+"\n"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(theirs, "data"), 0o700))
	for _, p := range []string{theirs, filepath.Join(theirs, "owner"), filepath.Join(theirs, "data")} {
		require.NoError(t, os.Chown(p, uid, gid))
	}
	require.NoError(t, os.Symlink(filepath.Join(theirs, "data"), filepath.Join(dir, "data")))
	_, err = postgresd.StartDetached(ctx, dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not root's")
	require.NoError(t, postgresd.DetachedAt(dir).Remove())
	assert.DirExists(t, theirs, "Remove does not delete a folder that is not a relocated cluster's of root's")

	// A folder elsewhere, root's and naming Dir.
	dir = filepath.Join(t.TempDir(), "pg")
	require.NoError(t, os.Mkdir(dir, 0o700))
	elsewhere := filepath.Join(t.TempDir(), postgresd.RunPrefix+"x")
	require.NoError(t, os.Mkdir(elsewhere, 0o711))
	require.NoError(t, os.WriteFile(filepath.Join(elsewhere, "owner"), []byte(dir+"\n"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, "data"), filepath.Join(dir, "data")))
	_, err = postgresd.StartDetached(ctx, dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a relocated cluster folder")
}
