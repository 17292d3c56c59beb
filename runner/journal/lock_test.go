package journal

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAcquireRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l, err := Acquire(dir, Owner{Command: "upshift run ."})
	require.NoError(t, err)
	_, stale := l.TakenOver()
	assert.False(t, stale)

	o, err := readOwner(filepath.Join(dir, ownerName))
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), o.PID)
	assert.Equal(t, "upshift run .", o.Command)
	assert.NotEmpty(t, o.Host)
	assert.False(t, o.Since.IsZero())
	assert.Equal(t, l.Owner().PID, o.PID)

	// Another Acquire, even in this process, is refused: flock conflicts
	// between open files, not processes.
	_, err = Acquire(dir, Owner{})
	var held *HeldError
	require.ErrorAs(t, err, &held)
	require.NotNil(t, held.Owner)
	assert.Equal(t, os.Getpid(), held.Owner.PID)

	require.NoError(t, l.Release())
	assert.NoFileExists(t, filepath.Join(dir, ownerName))
	assert.FileExists(t, filepath.Join(dir, lockName), "the lock file stays: removing it would race")
	require.NoError(t, l.Release(), "Release twice is a no-op")

	l2, err := Acquire(dir, Owner{})
	require.NoError(t, err)
	_, stale = l2.TakenOver()
	assert.False(t, stale, "a released lock is not stale")
	require.NoError(t, l2.Release())
}

func TestHeldErrorNamesHolder(t *testing.T) {
	now := time.Now()
	since := time.Date(now.Year(), now.Month(), now.Day(), 12, 1, 3, 0, time.Local)
	err := &HeldError{Dir: "/srv/p/.upshift/state", Owner: &Owner{
		PID: 1234, Host: "host", User: "user", Since: since, Command: "upshift run playbooks/rolling-upgrade",
	}}
	assert.Equal(t, "another upshift run holds the lock on /srv/p/.upshift/state: pid 1234 (user@host, since 12:01:03, `upshift run playbooks/rolling-upgrade`)", err.Error())

	err.Owner.Since = time.Date(2025, 12, 31, 23, 59, 0, 0, time.Local)
	assert.Contains(t, err.Error(), "since 2025-12-31 23:59:00,")

	unknown := &HeldError{Dir: "/d", Err: os.ErrNotExist}
	assert.Equal(t, "another upshift run holds the lock on /d (holder unknown: file does not exist)", unknown.Error())
}

// A lock held by another process is refused with that process named; once
// the holder is SIGKILLed the kernel drops its flock, and the next Acquire
// takes the lock over and reports the dead holder.
func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=lock", helperDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)

	_, err = Acquire(dir, Owner{})
	var held *HeldError
	require.ErrorAs(t, err, &held)
	require.NotNil(t, held.Owner)
	assert.Equal(t, cmd.Process.Pid, held.Owner.PID)
	assert.Contains(t, err.Error(), "another upshift run holds the lock on "+dir+": pid ")
	assert.Contains(t, err.Error(), "`upshift run playbooks/rolling-upgrade`)")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	l, err := Acquire(dir, Owner{Command: "upshift resume"})
	require.NoError(t, err)
	dead, stale := l.TakenOver()
	require.True(t, stale)
	assert.Equal(t, cmd.Process.Pid, dead.PID)
	assert.Equal(t, "upshift run playbooks/rolling-upgrade", dead.Command)
	o, err := readOwner(filepath.Join(dir, ownerName))
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), o.PID, "the owner file now names the new holder")
	require.NoError(t, l.Release())
	assert.NoFileExists(t, filepath.Join(dir, ownerName))
}

func TestStaleDamagedOwnerFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, ownerName), []byte(`{"pid":`), 0o600))
	l, err := Acquire(dir, Owner{})
	require.NoError(t, err)
	dead, stale := l.TakenOver()
	assert.True(t, stale)
	assert.Zero(t, dead.PID)
	require.NoError(t, l.Release())
}

// -var values (a password given on the command line) are not recorded in
// the owner file, nor shown to the run the lock refuses.
func TestOwnerHidesVarValues(t *testing.T) {
	assert.Equal(t,
		[]string{"upshift", "run", "pb", "-var", "db_password=(hidden)", "--var=token=(hidden)", "-var-file", "prod.vars", "--var", "x=(hidden)", "-var"},
		RedactArgs([]string{"upshift", "run", "pb", "-var", "db_password=s3cret", "--var=token=t0k=en", "-var-file", "prod.vars", "--var", "x=y", "-var"}))

	saved := os.Args
	os.Args = []string{"upshift", "run", "pb", "-var", "db_password=s3cret"}
	defer func() { os.Args = saved }()
	dir := t.TempDir()
	l, err := Acquire(dir, CurrentOwner(""))
	require.NoError(t, err)
	defer l.Release()
	b, err := os.ReadFile(filepath.Join(dir, ownerName))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "s3cret")
	_, err = Acquire(dir, Owner{})
	var held *HeldError
	require.ErrorAs(t, err, &held)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), "db_password=(hidden)")
}
