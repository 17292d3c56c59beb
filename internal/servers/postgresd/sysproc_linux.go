package postgresd

import "syscall"

// foregroundAttr puts the server in its own process group, away from
// signals sent to the test's group (a ^C stops it through Stop, in order),
// and has the kernel ask it for an immediate shutdown if the process that
// started it dies: no orphan server after a crashed test. Go sets the
// death signal after switching to the postgres user, so the switch does
// not clear it.
func foregroundAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
}
