package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/internal/servers/mariadbd"
	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
)

// buildPlatformd builds platformd once per test binary into a temp folder.
func buildPlatformd(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds platformd and starts HAProxy: skipped with -short")
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
		if _, err := exec.LookPath("haproxy"); err != nil {
			t.Fatal("haproxy is not installed: run .ci/setup (make test does)")
		}
	}
	bin := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "platformd"), "github.com/upshift-dev/upshift/cmd/platformd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// labDir is a folder for a test's lab; whatever lab is left in it when
// the test ends is stopped and purged (its own database server included).
func labDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() {
		if s, err := lab.Load(dir); err == nil {
			_ = lab.Down(s, io.Discard)
			_ = lab.Purge(s)
		}
	})
	return dir
}

// processesUnder lists the live processes whose command line names dir.
func processesUnder(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, e.Name()+": "+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return out
}

func TestUpStatusDown(t *testing.T) {
	bin := buildPlatformd(t)
	dir := labDir(t)
	ctx := context.Background()

	var log bytes.Buffer
	s, err := lab.Up(ctx, dir, bin, &log)
	require.NoError(t, err, log.String())
	require.Len(t, s.Nodes, 3)
	assert.FileExists(t, filepath.Join(dir, "db", "a.sqlite"), "the nodes created database A")
	assert.FileExists(t, filepath.Join(dir, "lab.json"))
	// What holds a DSN (a password, with PostgreSQL or MariaDB) is private.
	for _, f := range []string{filepath.Join(dir, "lab.json"), s.VarsFile(), s.Nodes[0].ConfigFile, s.Nodes[2].ConfigFile} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	assert.True(t, s.Nodes[0].Processing)
	assert.False(t, s.Nodes[1].Processing || s.Nodes[2].Processing)

	// Every node runs platformd from bin with its own config, detached.
	for _, n := range s.Nodes {
		pid := s.Node(n).Pid()
		require.NotZero(t, pid, n.Name)
		assert.Equal(t, n.Pid, pid, "lab.json records the pid")
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(bin, "platformd")+"\x00serve\x00--config\x00"+n.ConfigFile+"\x00", string(cmd))
		assert.Equal(t, fmt.Sprint(pid), session(t, pid), "%s leads its own session, so it outlives `lab up`", n.Name)
	}

	st := s.Inspect(ctx)
	require.Empty(t, st.LBErr)
	require.NotZero(t, st.LBPid)
	assert.Equal(t, "haproxy", st.LB)
	assert.Equal(t, s.LBPid, st.LBPid, "lab.json records HAProxy's pid")
	for _, n := range st.Nodes {
		assert.True(t, n.Healthy, n.Name)
		assert.Equal(t, "1", n.Version, n.Name)
		assert.False(t, n.ReadOnly, n.Name)
		assert.True(t, n.InRotation(), "%s: %s admin %d", n.Name, n.LBStatus, n.LBAdmin)
		assert.Equal(t, filepath.Join(dir, "db", "a.sqlite"), n.DSN)
		assert.False(t, n.Marker)
	}
	var table bytes.Buffer
	require.NoError(t, st.Write(&table))
	assert.Contains(t, table.String(), "node-1 (processing)")
	assert.Regexp(t, `node-3\s+\d+\s+ok\s+1\s+false\s+UP\s+0\s+`, table.String())

	// The front door reaches every node.
	seen := map[string]bool{}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	for i := 0; i < 30 && len(seen) < 3; i++ {
		resp, err := client.Get(s.URL() + "/version")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		seen[resp.Header.Get("X-Platform-Node")] = true
	}
	assert.Len(t, seen, 3, "HAProxy balances over all nodes")

	// The admin API is on a loopback listener of each node's own, behind
	// the token in a private file: the front door and the nodes' public
	// addresses answer 404 on it, and nothing there switches a node.
	for _, n := range s.Nodes {
		require.NotEmpty(t, n.AdminAddress, n.Name)
		assert.True(t, strings.HasPrefix(n.AdminAddress, "127.0.0.1:"), n.AdminAddress)
		assert.NotEqual(t, n.Address, n.AdminAddress)
		st, err := os.Stat(n.AdminTokenFile)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), n.AdminTokenFile)
		tok, err := os.ReadFile(n.AdminTokenFile)
		require.NoError(t, err)
		token := strings.TrimSpace(string(tok))
		require.Len(t, token, 64)
		for _, f := range []string{filepath.Join(dir, "lab.json"), s.VarsFile(), n.ConfigFile} {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			assert.NotContains(t, string(b), token, "%s holds %s's token, not its file", f, n.Name)
		}
		post := func(url, auth string) int {
			req, err := http.NewRequest("POST", url, strings.NewReader(`{"enabled":true}`))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", "Bearer "+auth)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		assert.Equal(t, http.StatusNotFound, post("http://"+n.Address+"/admin/read-only", token), n.Name)
		assert.Equal(t, http.StatusNotFound, post(s.URL()+"/admin/read-only", token), "front door")
		assert.Equal(t, http.StatusUnauthorized, post(n.ReadOnlyURL(), ""), n.Name)
		assert.Equal(t, http.StatusUnauthorized, post(n.ReadOnlyURL(), "x"+token[1:]), n.Name)
	}
	// The node plugin's view of a node reaches it with the token.
	require.NoError(t, s.Node(s.Nodes[1]).SetReadOnly(ctx, true))
	require.True(t, s.Inspect(ctx).Nodes[1].ReadOnly)
	require.NoError(t, s.Node(s.Nodes[1]).SetReadOnly(ctx, false))
	for _, n := range s.Inspect(ctx).Nodes {
		assert.False(t, n.ReadOnly, "%s writable", n.Name)
	}

	// The variables file is valid input for the shipped playbook.
	p := playbooks.NewParser()
	pb, diags := p.Load("../../playbooks/rolling-upgrade", playbooks.LoadOptions{VarFiles: []string{s.VarsFile()}, Env: []string{}})
	require.False(t, diags.HasErrors(), diagText(diags))
	_, diags = runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diagText(diags))
	vars, err := os.ReadFile(s.VarsFile())
	require.NoError(t, err)
	for _, want := range []string{
		`target_version = "2"`,
		`database_b     = "` + filepath.Join(dir, "db", "b.sqlite") + `"`,
		`path = "` + filepath.Join(dir, "db", "a.sqlite") + `"`,
		`socket     = "` + filepath.Join(dir, "haproxy", "admin.sock") + `"`,
		`migrate_command  = ["` + filepath.Join(bin, "platformd") + `", "migrate", "--config", "` + s.Nodes[1].ConfigFile + `"]`,
		`read_only_url    = "http://` + s.Nodes[2].AdminAddress + `/admin/read-only"`,
		`admin_token_file = "` + s.Nodes[2].AdminTokenFile + `"`,
	} {
		assert.Contains(t, string(vars), want)
	}

	// Up again: nothing restarted.
	log.Reset()
	again, err := lab.Up(ctx, dir, bin, &log)
	require.NoError(t, err)
	assert.Contains(t, log.String(), "already up")
	for i, n := range again.Nodes {
		assert.Equal(t, s.Node(s.Nodes[i]).Pid(), again.Node(n).Pid())
	}

	// Down stops everything, leaves the data, and leaves no process.
	log.Reset()
	require.NoError(t, lab.Down(s, &log))
	assert.Equal(t, "  node-1 stopped\n  node-2 stopped\n  node-3 stopped\n  haproxy stopped\n", log.String())
	assert.Empty(t, processesUnder(dir))
	for _, n := range s.Nodes {
		_, err := os.Stat(n.PidFile)
		assert.ErrorIs(t, err, os.ErrNotExist, "%s's pid file is removed", n.Name)
		assert.DirExists(t, n.DataDir)
	}
	assert.FileExists(t, filepath.Join(dir, "db", "a.sqlite"))
	assert.False(t, s.Running())
	require.NoError(t, lab.Down(s, io.Discard), "down twice is a no-op")
	assert.Equal(t, 0, again.Inspect(ctx).LBPid)
}

func TestUpRefusesAHalfRunningLab(t *testing.T) {
	bin := buildPlatformd(t)
	dir := labDir(t)
	ctx := context.Background()
	s, err := lab.Up(ctx, dir, bin, io.Discard)
	require.NoError(t, err)
	pid := s.Node(s.Nodes[1]).Pid()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !s.Node(s.Nodes[1]).Running() }, 5*time.Second, 20*time.Millisecond)

	_, err = lab.Up(ctx, dir, bin, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "partly up (node-2 not running)")

	st := s.Inspect(ctx)
	assert.Equal(t, 0, st.Nodes[1].Pid)
	assert.Equal(t, "not answering", st.Nodes[1].Health)

	require.NoError(t, lab.Down(s, io.Discard))
	assert.Empty(t, processesUnder(dir))
	// A stopped lab comes back up on its existing database.
	s2, err := lab.Up(ctx, dir, bin, io.Discard)
	require.NoError(t, err)
	for _, n := range s2.Inspect(ctx).Nodes {
		assert.True(t, n.Healthy && n.InRotation(), "%s: %s %s", n.Name, n.Health, n.LBStatus)
	}
	require.NoError(t, lab.Down(s2, io.Discard))
	assert.Empty(t, processesUnder(dir))
}

// session is a process's session id, from /proc/<pid>/stat.
func session(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	require.Greater(t, len(f), 3)
	return f[3] // state, ppid, pgrp, session
}

// TestNginxLab: the same lab with nginx in front is up, seen and down.
func TestNginxLab(t *testing.T) {
	bin := buildPlatformd(t)
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed")
		}
	}
	dir := labDir(t)
	ctx := context.Background()
	s, err := lab.UpWith(ctx, lab.Options{Dir: dir, Bin: bin, LoadBalancer: "nginx"}, io.Discard)
	require.NoError(t, err)
	st := s.Inspect(ctx)
	assert.Equal(t, "nginx", st.LB)
	assert.NotZero(t, st.LBPid)
	assert.Empty(t, st.LBErr)
	for _, n := range st.Nodes {
		assert.True(t, n.Healthy && n.InRotation(), "%s: %s %s", n.Name, n.Health, n.LBStatus)
	}
	var log bytes.Buffer
	_, err = lab.UpWith(ctx, lab.Options{Dir: dir, Bin: bin, LoadBalancer: "nginx"}, &log)
	require.NoError(t, err)
	assert.Contains(t, log.String(), "already up")
	resp, err := http.Get(s.URL() + "/version")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, lab.Down(s, io.Discard))
	assert.Empty(t, processesUnder(dir))
	assert.Zero(t, s.Inspect(ctx).LBPid)
}

func diagText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "%s: %s\n", d.Summary, d.Detail)
	}
	return b.String()
}

// TestFailedUpLeavesNothingRunning: a lab whose start fails part way (here
// a platformd that exits at once, after the sshd and the lab's own MariaDB
// are up; or a load balancer it does not know, after the sshd) stops what
// it had started, so nothing outlives a lab.json that may not name it.
func TestFailedUpLeavesNothingRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd and MariaDB: skipped with -short")
	}
	if _, err := os.Stat("/usr/sbin/mariadbd"); err != nil {
		t.Fatal("mariadb-server is not installed: run .ci/setup (make test does)")
	}
	broken := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(broken, "platformd"), []byte("#!/bin/sh\necho 'platformd: broken on purpose' >&2\nexit 1\n"), 0o755))
	ctx := context.Background()
	for name, c := range map[string]struct {
		o       lab.Options
		failure string
	}{
		"node fails after the database server": {lab.Options{Bin: broken, Database: lab.MySQL, NodePlugin: "ssh"}, "node-1"},
		"unknown load balancer after the sshd": {lab.Options{Bin: broken, LoadBalancer: "f5", NodePlugin: "ssh"}, `unknown load balancer "f5"`},
	} {
		t.Run(name, func(t *testing.T) {
			o := c.o
			o.Dir = filepath.Join(t.TempDir(), "lab")
			server := mariadbd.DetachedAt(filepath.Join(o.Dir, lab.MySQL))
			t.Cleanup(func() {
				_ = server.Stop()
				_ = sshd.Stop(filepath.Join(o.Dir, "sshd"))
			})
			_, err := lab.UpWith(ctx, o, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.failure)
			assert.FileExists(t, filepath.Join(o.Dir, "sshd", "sshd.log"), "sshd had been started")
			if o.Database == lab.MySQL {
				assert.NotZero(t, mariadbd.DetachedAt(server.Dir).Port, "the database server had come up")
			}
			assert.Empty(t, processesUnder(o.Dir), "nothing of the failed lab runs on")
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://lab:s3cr%40t@127.0.0.1:5432/a?sslmode=disable": "postgres://lab:xxxxx@127.0.0.1:5432/a?sslmode=disable",
		"postgres://lab@127.0.0.1/a":                               "postgres://lab@127.0.0.1/a",
		"root:p@ss/w@tcp(127.0.0.1:3306)/a?parseTime=true":         "root:xxxxx@tcp(127.0.0.1:3306)/a?parseTime=true",
		"root@tcp(127.0.0.1:3306)/":                                "root@tcp(127.0.0.1:3306)/",
		"host=127.0.0.1 password='it\\'s secret' dbname=a":         "host=127.0.0.1 password=xxxxx dbname=a",
		"host=127.0.0.1 password=s3cret dbname=a":                  "host=127.0.0.1 password=xxxxx dbname=a",
		"/var/lib/platform/a.sqlite":                               "/var/lib/platform/a.sqlite",
		"root:s3cret@tcp(127.0.0.1:3306)/a?timeout=soon":           "(a DSN that does not parse)",
	} {
		got := lab.RedactDSN(in)
		assert.Equal(t, want, got, in)
		for _, secret := range []string{"s3cr", "p@ss", "secret"} {
			assert.NotContains(t, got, secret, in)
		}
	}
}

// TestPurgeRemovesTheLabsOwnServer: down --purge leaves nothing of a lab
// on PostgreSQL, the cluster included where it lives outside the lab's
// folder (as root, under a folder the postgres user cannot enter).
func TestPurgeRemovesTheLabsOwnServer(t *testing.T) {
	bin := buildPlatformd(t)
	dir := labDir(t)
	ctx := context.Background()
	s, err := lab.UpWith(ctx, lab.Options{Dir: dir, Bin: bin, Database: lab.Postgres}, io.Discard)
	require.NoError(t, err)
	require.NotEmpty(t, s.DB.Server)
	cluster, err := filepath.EvalSymlinks(filepath.Join(s.DB.Server, "data"))
	require.NoError(t, err)
	if os.Geteuid() == 0 {
		// t.TempDir is 0700, out of the postgres user's reach.
		assert.False(t, strings.HasPrefix(cluster, dir+"/"), "the cluster was relocated: %s", cluster)
	}
	require.NoError(t, lab.Down(s, io.Discard))
	require.NoError(t, lab.Purge(s))
	assert.NoDirExists(t, dir)
	assert.NoDirExists(t, cluster)
	assert.Empty(t, processesUnder(dir))
}
