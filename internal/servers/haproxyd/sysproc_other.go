//go:build !linux

package haproxyd

import "syscall"

// sysProcAttr puts HAProxy in its own process group, so Stop can end the
// master and its workers together.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
