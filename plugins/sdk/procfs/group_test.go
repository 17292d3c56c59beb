package procfs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// A command that would outlive its step: sh prints the pid of a
// background sleep, then waits for it.
const outliving = `sleep 30 & echo $!; wait`

func TestMain(m *testing.M) {
	if mode := os.Getenv("PROCFS_TEST_STEP_PARENT"); mode != "" {
		// A plugin-like parent running a step that would outlive it; the
		// test SIGKILLs it. In mode "reaper-killed", its reaper is killed
		// first (someone's stray kill): a new one must take over.
		pr, pw, _ := os.Pipe()
		cmd := exec.Command("sh", "-c", "echo $$; "+outliving)
		cmd.Stdout = pw
		go func() { _, _ = procfs.RunGroup(context.Background(), cmd) }()
		r := bufio.NewReader(pr)
		for range 2 {
			line, _ := r.ReadString('\n')
			fmt.Print(line)
		}
		if mode == "reaper-killed" {
			old := procfs.ReaperPid()
			_ = syscall.Kill(old, syscall.SIGKILL)
			for procfs.ReaperPid() == old || procfs.ReaperPid() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		fmt.Println("ready")
		select {}
	}
	os.Exit(m.Run())
}

func gone(t *testing.T, pids ...int) {
	t.Helper()
	assert.Empty(t, procfs.WaitGone(pids, 3*time.Second), "pids of the step's group still running")
}

func TestRunGroupExitCode(t *testing.T) {
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "echo hi; echo err >&2; exit 3")
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := procfs.RunGroup(context.Background(), cmd)
	require.NoError(t, err)
	assert.Equal(t, 3, code)
	assert.Equal(t, "hi\nerr\n", out.String())

	code, err = procfs.RunGroup(context.Background(), exec.Command("true"))
	require.NoError(t, err)
	assert.Equal(t, 0, code)

	_, err = procfs.RunGroup(context.Background(), exec.Command("no-such-program-on-path"))
	require.Error(t, err, "not found on PATH: not started")
	_, err = procfs.RunGroup(context.Background(), exec.Command("/no/such/program"))
	require.Error(t, err, "a missing program is not started: an error, not an exit status")
	assert.Contains(t, err.Error(), "/no/such/program")

	// A command killed by a signal reports 128+n, as a shell does.
	code, err = procfs.RunGroup(context.Background(), exec.Command("sh", "-c", "kill -TERM $$"))
	require.NoError(t, err)
	assert.Equal(t, 128+int(syscall.SIGTERM), code)
}

// TestRunGroupKillsWhatIsLeft: what the command left in the background
// ends with it.
func TestRunGroupKillsWhatIsLeft(t *testing.T) {
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!")
	cmd.Stdout = &out
	start := time.Now()
	code, err := procfs.RunGroup(context.Background(), cmd)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Less(t, time.Since(start), 2*time.Second, "the background sleep holds no pipe open")
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	require.NoError(t, err)
	gone(t, pid)
}

// TestRunGroupCancel: the step's context ends, the whole group goes.
func TestRunGroupCancel(t *testing.T) {
	pr, pw := osPipe(t)
	cmd := exec.Command("sh", "-c", outliving)
	cmd.Stdout = pw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := procfs.RunGroup(ctx, cmd); done <- err }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	sleep, _ := strconv.Atoi(strings.TrimSpace(line))
	require.True(t, procfs.Alive(sleep))
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("RunGroup did not return after cancel")
	}
	gone(t, sleep)
}

func osPipe(t *testing.T) (*os.File, *os.File) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestRunGroupDiesWithItsParent SIGKILLs a plugin-like parent in the middle
// of a step, ten times: neither the command nor what it started remains.
func TestRunGroupDiesWithItsParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	for _, mode := range []string{"plain", "reaper-killed"} {
		t.Run(mode, func(t *testing.T) { diesWithItsParent(t, mode) })
	}
}

func diesWithItsParent(t *testing.T, mode string) {
	self, err := os.Executable()
	require.NoError(t, err)
	left := 0
	for round := range 10 {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCFS_TEST_STEP_PARENT="+mode)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		r := bufio.NewReader(out)
		var pids []int
		for range 2 { // the command's sh, then its sleep
			line, err := r.ReadString('\n')
			require.NoError(t, err, "round %d", round)
			pid, err := strconv.Atoi(strings.TrimSpace(line))
			require.NoError(t, err)
			require.True(t, procfs.Alive(pid))
			pids = append(pids, pid)
		}
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "ready\n", line)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		for _, pid := range procfs.WaitGone(pids, 3*time.Second) {
			left++
			t.Errorf("round %d: pid %d of the step outlived its SIGKILLed parent", round, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	t.Logf("10 SIGKILLs of the parent mid-step (%s): %d of 20 step processes left", mode, left)
}

// TestReaperKillsTheGroupsStillListed runs the reaper's sh alone: of the
// groups it was told of, it kills those not removed since, and only those,
// when its stdin ends.
func TestReaperKillsTheGroupsStillListed(t *testing.T) {
	group := func() *exec.Cmd {
		c := exec.Command("sleep", "30")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, c.Start())
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	finished, running, other := group(), group(), group()
	sh := exec.Command("sh", "-c", procfs.ReaperScript)
	sh.Stdin = strings.NewReader(fmt.Sprintf("+ %d\n+ %d\n+ %d\n- %d\n- %d\n",
		finished.Process.Pid, running.Process.Pid, other.Process.Pid, finished.Process.Pid, other.Process.Pid))
	require.NoError(t, sh.Run())
	gone(t, running.Process.Pid)
	assert.True(t, procfs.Alive(finished.Process.Pid), "a group removed from the list is left alone")
	assert.True(t, procfs.Alive(other.Process.Pid), "a group removed from the list is left alone")
}

// TestOneReaperForEveryStep: steps share one reaper, and a finished step's
// group leaves its list.
func TestOneReaperForEveryStep(t *testing.T) {
	_, err := procfs.RunGroup(context.Background(), exec.Command("true"))
	require.NoError(t, err)
	pid := procfs.ReaperPid()
	require.NotZero(t, pid)
	for range 5 {
		code, err := procfs.RunGroup(context.Background(), exec.Command("sh", "-c", "sleep 30 & exit 4"))
		require.NoError(t, err)
		require.Equal(t, 4, code)
	}
	assert.Equal(t, pid, procfs.ReaperPid(), "one reaper for every step")
	assert.Zero(t, procfs.LiveGroups(), "finished groups leave the reaper's list")
}

func TestListensOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	listens, known := procfs.ListensOn(os.Getpid(), port)
	assert.True(t, known)
	assert.True(t, listens)
	assert.Contains(t, procfs.ListenerPids(port), os.Getpid())

	child := exec.Command("sleep", "30")
	require.NoError(t, child.Start())
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	listens, known = procfs.ListensOn(child.Process.Pid, port)
	assert.True(t, known)
	assert.False(t, listens, "another process listens on the port")

	ln.Close()
	_, known = procfs.ListensOn(os.Getpid(), port)
	assert.False(t, known, "nothing listens")
	assert.Equal(t, fmt.Sprintf("pid %d (sleep 30)", child.Process.Pid), procfs.Describe(child.Process.Pid))
}

func TestDescendsFrom(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	sleep, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err)
	assert.True(t, procfs.DescendsFrom(sleep, cmd.Process.Pid))
	assert.True(t, procfs.DescendsFrom(sleep, os.Getpid()))
	assert.True(t, procfs.DescendsFrom(sleep, sleep))
	assert.False(t, procfs.DescendsFrom(cmd.Process.Pid, sleep))
	assert.False(t, procfs.DescendsFrom(os.Getpid(), cmd.Process.Pid))
}

// TestRunGroupKeepsStdin: the command reads the stdin it was given (a
// restore fed by a dump), not the /dev/null sh gives a background command.
func TestRunGroupKeepsStdin(t *testing.T) {
	cmd := exec.Command("cat")
	cmd.Stdin = strings.NewReader("rows\n")
	var out bytes.Buffer
	cmd.Stdout = &out
	code, err := procfs.RunGroup(context.Background(), cmd)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Equal(t, "rows\n", out.String())
}
