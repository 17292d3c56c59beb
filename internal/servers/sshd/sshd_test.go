package sshd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/crypto/ssh"

	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestDetachedStop: Stop ends the detached sshd and removes its pid file;
// stopping again is a no-op.
func TestDetachedStop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sshd for tests needs root")
	}
	dir := t.TempDir()
	srv, err := StartDetached(dir)
	require.NoError(t, err)
	pid := procfs.ReadPidFile(filepath.Join(dir, "sshd.pid"))
	require.NotZero(t, pid)
	t.Cleanup(func() { _ = Stop(dir) })
	require.True(t, ours(pid, dir), "the pid file names this dir's sshd")

	// An open, authenticated session: its processes go too.
	key, err := ssh.ParsePrivateKey([]byte(mustRead(t, srv.ClientKey)))
	require.NoError(t, err)
	client, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(srv.HostKey)})
	require.NoError(t, err)
	defer client.Close()
	sessions := procfs.Pids(procfs.Children(pid))
	require.NotEmpty(t, sessions, "the session has its own process")

	// A program that merely names the config is not the sshd.
	reader := exec.Command("tail", "-f", filepath.Join(dir, "sshd_config"))
	require.NoError(t, reader.Start())
	t.Cleanup(func() { _ = reader.Process.Kill(); _ = reader.Wait() })

	require.NoError(t, Stop(dir))
	assert.False(t, procfs.Alive(pid), "sshd is gone")
	assert.False(t, procfs.AnyAlive(sessions), "and so are its sessions")
	assert.True(t, procfs.Alive(reader.Process.Pid), "tail on the config is left alone")
	assert.NoFileExists(t, filepath.Join(dir, "sshd.pid"))
	assert.NoError(t, Stop(dir), "twice")
}

// TestStopLeavesAReusedPidAlone: a stale pid file whose pid now belongs to
// another process is removed, and that process is not signalled.
func TestStopLeavesAReusedPidAlone(t *testing.T) {
	other := exec.Command("sleep", "30")
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sshd.pid")
	require.NoError(t, os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600))

	require.NoError(t, Stop(dir))
	assert.True(t, procfs.Alive(other.Process.Pid), "the unrelated process still runs")
	assert.NoFileExists(t, pidFile)
}
