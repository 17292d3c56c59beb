//go:build !linux

package procfs

import "syscall"

// guard does nothing without a parent-death signal: the group is still
// killed when the step's context ends.
func guard(*syscall.SysProcAttr) {}
