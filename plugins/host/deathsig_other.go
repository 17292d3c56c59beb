//go:build !linux

package host

import "os/exec"

// dieWithUs does nothing where there is no parent-death signal: plugins end
// through Close and CleanupAll only.
func dieWithUs(*exec.Cmd) {}
