package procfs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// RunGroup runs cmd, built with exec.Command (not CommandContext) and not
// started, for the length of a step, so that no process of it outlives the
// step or this process:
//
//   - it runs in a process group of its own, led by the command itself;
//   - the group is SIGKILLed when ctx ends, and when the command exits
//     (what it started in the background goes with it; a command that must
//     outlive the step detaches itself, with setsid);
//   - the group dies with this process too, SIGKILL of it included: the
//     command has a parent-death signal (Linux), and this process's reaper
//     (see reaper) kills every group still registered when this process
//     ends.
//
// code is the command's exit status (128+n for a signal n, as a shell
// reports it); err is set only when it did not run to its end (not found or
// not started, ctx ended, killed). cmd.Path, Args, Env, Dir, Stdin, Stdout
// and Stderr are kept; a nil Env is ChildEnv(nil), not this process's
// environment; cmd must have no ExtraFiles or SysProcAttr of its own.
//
// Why no guard process: an earlier version led each group with a small sh
// that waited for the command and then killed the group. That cost two
// process starts a step (4.5 ms of a 6.5 ms exec of /bin/true on a 2-core
// machine); one reaper per plugin process gives the same guarantees for
// the price of two short pipe writes.
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	if cmd.WaitDelay == 0 {
		// Output pipes held open by a process that left the group (setsid)
		// must not hold the step forever.
		cmd.WaitDelay = 2 * time.Second
	}
	if err := theReaper.ready(); err != nil {
		return -1, fmt.Errorf("procfs.RunGroup: %w", err)
	}

	// The parent-death signal follows the thread that forks, not the
	// process: a goroutine of this process that exits while locked to its
	// thread ends that thread. Locked, this thread runs nothing else until
	// the command has been waited for, so the signal fires only when this
	// process dies.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	pgid := cmd.Process.Pid
	if err := theReaper.add(pgid); err != nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
		return -1, fmt.Errorf("procfs.RunGroup: %w", err)
	}
	exited := make(chan struct{})
	var werr error
	go func() {
		if leaderStaysZombie {
			// The leader stays a zombie until cmd.Wait reaps it, so its
			// pid, the group's id, cannot be taken by an unrelated process
			// before the group is killed below.
			waitExited(cmd.Process.Pid)
		} else {
			werr = cmd.Wait()
		}
		close(exited)
	}()
	cancelled := false
	select {
	case <-exited:
	case <-ctx.Done():
		cancelled = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// What the command left running in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	theReaper.remove(pgid)
	if leaderStaysZombie {
		werr = cmd.Wait()
	}
	if cancelled {
		return -1, ctx.Err()
	}
	st := cmd.ProcessState
	if st == nil {
		return -1, fmt.Errorf("the command did not run to its end (%v)", werr)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		// exec.ErrWaitDelay: the command ended but a process outside its
		// group kept its output open; what it printed is cut short.
		if !errors.Is(werr, exec.ErrWaitDelay) {
			return -1, werr
		}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// theReaper is this process's one reaper, started on the first RunGroup.
var theReaper = &reaper{live: map[int]bool{}}
