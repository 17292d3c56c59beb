//go:build !linux

package postgresd

import "syscall"

// foregroundAttr puts the server in its own process group, away from
// signals sent to the test's group.
func foregroundAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
