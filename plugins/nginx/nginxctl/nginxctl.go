// Package nginxctl owns what the nginx plugin does to a running nginx: the
// upstream file upshift manages (one `server` line per server, `down` for
// one out of rotation), `nginx -t`, and a checked graceful reload that waits
// for the workers of the previous configuration to finish their in-flight
// requests. Running an nginx for tests and the lab is internal/servers/nginxd's.
package nginxctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// CmdTimeout bounds each nginx command (`nginx -t`, starting nginx).
const CmdTimeout = 30 * time.Second

// Binary finds nginx: given when not empty (it must exist), else nginx on
// PATH, else /usr/sbin/nginx (where Debian puts it, often not on a user's
// PATH).
func Binary(given string) (string, error) {
	if given != "" {
		st, err := os.Stat(given)
		if err != nil {
			return "", fmt.Errorf("nginx binary %s: %w", given, fsutil.UnwrapPath(err))
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("nginx binary %s is not an executable file", given)
		}
		return given, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not found on PATH or at /usr/sbin/nginx")
}

// Available reports whether an nginx binary can be found, for tests.
func Available() bool {
	_, err := Binary("")
	return err == nil
}

// Ctl drives a running nginx through its files: the binary, the main
// configuration and the master's pid file.
type Ctl struct {
	Binary  string
	Conf    string
	PidFile string
}

// Test runs `nginx -t` on the main configuration, which reads every file it
// includes. The error is one line: nginx's [emerg] lines, joined.
func (c Ctl) Test(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binary, "-t", "-q", "-c", c.Conf)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("nginx -t -c %s: no answer within %s", c.Conf, CmdTimeout)
	}
	msg := OneLine(string(out))
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("nginx -t -c %s failed: %s", c.Conf, msg)
}

// errLineRE matches nginx's error lines as `nginx -t` prints them: with a
// "nginx: " prefix, or in error-log form (time, level, pid#tid) when the
// configuration could not be read far enough to know its own log.
var errLineRE = regexp.MustCompile(`^(?:nginx: )?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?\[(emerg|alert|crit)\] (?:\d+#\d+: )?(.*)$`)

// OneLine keeps nginx's error lines ([emerg], [alert], [crit]) without the
// "nginx: " prefix, joined with "; ", or the first line when there are none.
func OneLine(out string) string {
	var keep []string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if m := errLineRE.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			keep = append(keep, "["+m[1]+"] "+m[2])
		}
	}
	if len(keep) == 0 {
		return strings.TrimPrefix(strings.TrimSpace(lines[0]), "nginx: ")
	}
	return strings.Join(keep, "; ")
}

// Master returns the master's pid from the pid file, checking that the pid
// is a live nginx master: a stale pid file must not make upshift signal
// some other process.
func (c Ctl) Master() (int, error) {
	b, err := os.ReadFile(c.PidFile)
	if err != nil {
		return 0, fmt.Errorf("nginx is not running: pid file %s: %w", c.PidFile, fsutil.UnwrapPath(err))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s does not hold a pid", c.PidFile)
	}
	if !isMaster(pid) {
		return 0, fmt.Errorf("nginx is not running: pid %d from %s is not a live nginx master process", pid, c.PidFile)
	}
	return pid, nil
}

// MasterPID is the pid of the live nginx master named by pidFile, or 0.
func MasterPID(pidFile string) int {
	pid, err := Ctl{PidFile: pidFile}.Master()
	if err != nil {
		return 0
	}
	return pid
}

func isMaster(pid int) bool {
	p, ok := procfs.Read(pid)
	return ok && p.Live() && strings.HasPrefix(p.Title(), "nginx: master process")
}

// Workers lists the live worker processes of master (not its cache
// processes), those of the current configuration and those still finishing
// the requests of an older one ("worker process is shutting down").
func Workers(master int) []int {
	var out []int
	for _, p := range procfs.Children(master) {
		if strings.HasPrefix(p.Title(), "nginx: worker process") {
			out = append(out, p.Pid)
		}
	}
	return out
}

// ShuttingDown lists master's workers that belong to an older
// configuration and are finishing their in-flight requests.
func ShuttingDown(master int) []int {
	var out []int
	for _, p := range procfs.Children(master) {
		if strings.HasPrefix(p.Title(), "nginx: worker process is shutting down") {
			out = append(out, p.Pid)
		}
	}
	return out
}

// Reload reloads nginx gracefully: SIGHUP to the master, which starts
// workers with the new configuration and asks the old ones to finish their
// in-flight requests and exit. It returns once a new worker runs (the new
// configuration is in effect) and the old ones have been told to stop,
// with the old workers, for WaitExited. The
// caller runs Test first: a configuration the master cannot load leaves the
// old workers serving, and Reload reports that after wait.
func (c Ctl) Reload(ctx context.Context, wait time.Duration) (old []int, err error) {
	master, err := c.Master()
	if err != nil {
		return nil, err
	}
	old = Workers(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return nil, fmt.Errorf("reloading nginx (master pid %d): %w", master, err)
	}
	deadline := time.Now().Add(wait)
	for {
		if reloaded(master, old) {
			return old, nil
		}
		if !isMaster(master) {
			return nil, fmt.Errorf("nginx master (pid %d) exited during the reload", master)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nginx (master pid %d) started no worker with the new configuration within %s of the reload: it kept the old one (see nginx's error log)", master, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// reloaded: a worker of the new configuration runs and every old worker
// has exited or is shutting down, so ShuttingDown tells from now on which
// old workers still finish requests.
func reloaded(master int, old []int) bool {
	fresh := false
	for _, p := range procfs.Children(master) {
		if !strings.HasPrefix(p.Title(), "nginx: worker process") {
			continue
		}
		switch {
		case !contains(old, p.Pid):
			fresh = fresh || !strings.Contains(p.Title(), "shutting down")
		case !strings.Contains(p.Title(), "shutting down"):
			return false
		}
	}
	return fresh
}

func contains(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

// WaitExited waits until none of pids is alive, or the timeout. progress,
// when not nil, is called with the number still alive when that number
// changes and at least every second. It returns how many are left.
func WaitExited(ctx context.Context, pids []int, timeout time.Duration, progress func(left int)) (int, error) {
	deadline := time.Now().Add(timeout)
	lastN, lastAt := -1, time.Time{}
	for {
		n := 0
		for _, p := range pids {
			if procfs.Alive(p) {
				n++
			}
		}
		if n == 0 {
			return 0, nil
		}
		if progress != nil && (n != lastN || time.Since(lastAt) >= time.Second) {
			progress(n)
			lastN, lastAt = n, time.Now()
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d nginx worker(s) of the previous configuration still serving requests after %s", n, timeout)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
