package mariadbd

import (
	"syscall"
)

// sysProcAttr has the kernel kill mariadbd when the process that started it
// dies: no orphan server after a crashed or timed-out test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
