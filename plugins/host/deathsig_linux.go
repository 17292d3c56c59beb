//go:build linux

package host

import (
	"os/exec"
	"syscall"
)

// dieWithUs asks Linux to SIGKILL the plugin process when upshift dies, by
// any signal (SIGKILL, SIGHUP, SIGPIPE) or exit: a plugin must not live on
// with nobody to answer to. The signal is tied to the thread that forks,
// not to the process: see launch, which forks on a locked thread and keeps
// it until the plugin has ended.
func dieWithUs(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
