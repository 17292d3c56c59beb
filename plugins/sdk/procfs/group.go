package procfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stepGuard is the shell that leads a step command's process group. It
// runs the command in the background (its descriptor 3 closed), waits for
// it, reports its exit status on descriptor 3, then SIGKILLs the whole
// group, itself included, so nothing the command left behind (a `sleep &`,
// a backup tool's helper) outlives the step. SIGTERM (the parent-death
// signal this process's end sends it, see guard) kills the group at once.
// A background command of a non-interactive sh reads /dev/null unless its
// stdin is redirected explicitly: fd 4 carries the guard's stdin to it.
const stepGuard = `trap 'kill -KILL 0' TERM
exec 4<&0
"$@" 3>&- 0<&4 4<&- &
wait $!
echo $? >&3
kill -KILL 0`

// RunGroup runs cmd, built with exec.Command (not CommandContext) and not
// started, for the length of a step, so that no process of it outlives the
// step or this process:
//
//   - it runs in a process group of its own, led by a small sh guard;
//   - the group is SIGKILLed when ctx ends, and when the command exits
//     (what it started in the background goes with it; a command that must
//     outlive the step detaches itself, with setsid);
//   - on Linux, the guard gets a parent-death signal, so the group dies
//     with this process too, SIGKILL of the plugin included.
//
// code is the command's exit status (128+n for a signal n); err is set
// only when it did not run to its end (not started, ctx ended, killed).
// cmd.Path, Args, Env, Dir, Stdin, Stdout and Stderr are kept; a nil Env
// is ChildEnv(nil), not this process's environment; cmd must have no
// ExtraFiles or SysProcAttr of its own.
func RunGroup(ctx context.Context, cmd *exec.Cmd) (code int, err error) {
	if cmd.Err != nil {
		return -1, cmd.Err
	}
	if cmd.Process != nil || len(cmd.ExtraFiles) > 0 || cmd.SysProcAttr != nil {
		return -1, errors.New("procfs.RunGroup: the command is started or has ExtraFiles or SysProcAttr")
	}
	if cmd.Env == nil {
		cmd.Env = ChildEnv(nil) // never the plugin's whole environment
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer statusR.Close()
	cmd.Args = append([]string{"sh", "-c", stepGuard, "upshift-step", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	cmd.ExtraFiles = []*os.File{statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	guard(cmd.SysProcAttr)
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}

	// The parent-death signal follows the thread that forks, not the
	// process: a goroutine of this process that exits while locked to its
	// thread ends that thread. Locked, this thread runs nothing else until
	// the command has been waited for, so the signal fires only when this
	// process dies.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	statusW.Close()
	if err != nil {
		return -1, err
	}
	pgid := cmd.Process.Pid
	status := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(statusR).ReadString('\n')
		status <- strings.TrimSpace(line)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		werr = <-waited
	}
	// The guard killed the group already, unless it died first.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if s := <-status; s != "" {
		n, perr := strconv.Atoi(s)
		if perr == nil {
			return n, nil
		}
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	return -1, fmt.Errorf("the command's process group was killed before it finished (%v)", werr)
}
