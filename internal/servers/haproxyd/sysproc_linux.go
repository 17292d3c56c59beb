package haproxyd

import "syscall"

// sysProcAttr puts HAProxy in its own process group, so Stop can end the
// master and its workers together, and has the kernel kill the master if the
// process that started it dies: no orphan HAProxy after a crashed test.
// (Workers exit on their own when their master goes away.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
