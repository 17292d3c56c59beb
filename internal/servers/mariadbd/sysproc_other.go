//go:build !linux

package mariadbd

import "syscall"

// sysProcAttr puts mariadbd in its own process group. (There is no
// parent-death signal outside Linux.)
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
