package host_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// parentEnv turns the test binary into an upshift-like parent: it launches
// the testkit plugin named by the variable's value (path and checksum)
// parentPlugins times, prints their pids on one line and waits to be
// killed.
const (
	parentEnv     = "UPSHIFT_HOST_TEST_PARENT"
	parentPlugins = 3
)

func actAsParent() int {
	path, sum, _ := strings.Cut(os.Getenv(parentEnv), "\n")
	var pids []string
	for i := range parentPlugins {
		// Each launch from a goroutine of its own, which then ends, as the
		// session's parallel starts do: the plugins must survive that.
		type res struct {
			inst *host.Process
			err  error
		}
		ch := make(chan res, 1)
		go func() {
			p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: path, SHA256: sum, Logger: hclog.NewNullLogger()})
			if err != nil {
				ch <- res{err: err}
				return
			}
			ch <- res{inst: p.(*host.Process)}
		}()
		r := <-ch
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "plugin %d: %v\n", i, r.err)
			return 1
		}
		pids = append(pids, strconv.Itoa(r.inst.Pid()))
	}
	// Threads come and go in a real run: a goroutine that exits locked
	// takes its thread with it. None of them may take a plugin along.
	for range 20 {
		done := make(chan struct{})
		go func() { runtime.LockOSThread(); close(done) }()
		<-done
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Println(strings.Join(pids, " "))
	select {}
}

// TestPluginsDieWithUpshift SIGKILLs an upshift-like parent that launched
// real plugin processes, ten times, and finds none of them left.
func TestPluginsDieWithUpshift(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	launched, left := 0, 0
	for round := range 10 {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), parentEnv+"="+testkitPath+"\n"+testkitSum)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err, "round %d: the parent printed no pids", round)
		var pids []int
		for _, f := range strings.Fields(line) {
			pid, err := strconv.Atoi(f)
			require.NoError(t, err)
			require.True(t, procfs.Alive(pid), "round %d: plugin %d died before its parent", round, pid)
			pids = append(pids, pid)
		}
		require.Len(t, pids, parentPlugins)
		launched += len(pids)

		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		for _, pid := range procfs.WaitGone(pids, 5*time.Second) {
			left++
			t.Errorf("round %d: plugin pid %d outlived its SIGKILLed parent", round, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	t.Logf("10 SIGKILLs of the parent: %d plugin processes launched, %d left", launched, left)
}
