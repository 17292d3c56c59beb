package procfs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

func TestReadSelf(t *testing.T) {
	p, ok := procfs.Read(os.Getpid())
	require.True(t, ok)
	assert.True(t, p.Live())
	assert.Equal(t, os.Getppid(), p.PPid)
	exe, _ := os.Executable()
	assert.Equal(t, filepath.Base(exe), filepath.Base(p.Args[0]))
	// CPU time grows while this process spins (ticks of 10 ms; the loop
	// is bounded so that a busy machine only makes it longer).
	before := p.CPU
	grew := false
	for start := time.Now(); !grew && time.Since(start) < 5*time.Second; {
		p, ok = procfs.Read(os.Getpid())
		require.True(t, ok)
		grew = p.CPU > before
	}
	assert.True(t, grew, "utime and stime grow as the process runs")
	_, ok = procfs.Read(0)
	assert.False(t, ok)
}

// TestZombieIsNotAlive: a child that exited but is not reaped yet is a
// zombie, and a zombie does not run; reaped, it is gone.
func TestZombieIsNotAlive(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	assert.True(t, procfs.Alive(pid))
	kids := procfs.Children(os.Getpid())
	assert.Contains(t, procfs.Pids(kids), pid)
	for _, k := range kids {
		if k.Pid == pid {
			assert.Equal(t, "sleep 30", k.Title())
		}
	}

	require.NoError(t, cmd.Process.Kill())
	require.Eventually(t, func() bool {
		p, ok := procfs.Read(pid)
		return ok && p.State == 'Z'
	}, 5*time.Second, 10*time.Millisecond, "the killed child becomes a zombie until reaped")
	assert.False(t, procfs.Alive(pid))
	assert.False(t, procfs.AnyAlive([]int{pid}))
	assert.NotContains(t, procfs.Pids(procfs.Children(os.Getpid())), pid)
	_ = cmd.Wait()
	_, ok := procfs.Read(pid)
	assert.False(t, ok, "reaped: gone")
}

func TestReadPidFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "pid")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		return p
	}
	assert.Equal(t, 1234, procfs.ReadPidFile(write("1234\n")))
	assert.Equal(t, 77, procfs.ReadPidFile(write(" 77 \nsecond line\n")))
	assert.Equal(t, 0, procfs.ReadPidFile(write("nope")))
	assert.Equal(t, 0, procfs.ReadPidFile(write("-5")))
	assert.Equal(t, 0, procfs.ReadPidFile(filepath.Join(dir, "missing")))
	assert.Equal(t, os.Getpid(), procfs.ReadPidFile(write(strconv.Itoa(os.Getpid()))))
}
