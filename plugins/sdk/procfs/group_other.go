//go:build !linux

package procfs

import "syscall"

// dieWithParent does nothing without a parent-death signal: the reaper
// still kills the group when this process ends.
func dieWithParent(*syscall.SysProcAttr) {}

// leaderStaysZombie is false without waitid's WNOWAIT: RunGroup reaps the
// leader, then kills its group. A process group's id is not reused while
// the group has members, so the kill reaches only what the command left.
const leaderStaysZombie = false

func waitExited(int) {}
