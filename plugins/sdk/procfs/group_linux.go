//go:build linux

package procfs

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// dieWithParent gives the command a parent-death signal: SIGKILL when the
// thread that started it (locked to RunGroup) ends, which is when this
// process ends. What the command itself started is the reaper's.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// leaderStaysZombie: RunGroup learns of the leader's exit without reaping it.
const leaderStaysZombie = true

// waitExited returns once process pid (a child) has exited, without
// reaping it (WNOWAIT): it stays a zombie, its pid taken, until cmd.Wait.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
