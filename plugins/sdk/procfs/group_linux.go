//go:build linux

package procfs

import "syscall"

// guard gives the step's guard shell a parent-death signal: SIGTERM, which
// it traps to kill its whole group (SIGKILL would end only the guard).
func guard(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
