// Package haproxyd owns running a real HAProxy for upshift's tests and demo
// lab: it renders a config (one loopback frontend, one health-checked
// backend, an admin socket, a server-state file), starts HAProxy in
// master-worker mode, reloads it gracefully with runtime state kept, and
// stops it without leaving processes behind. It talks to HAProxy through
// the plugin's own runtime API client (plugins/haproxy/runtimeapi).
package haproxyd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
)

// HAProxy is a running HAProxy (master process plus its worker).
type HAProxy struct {
	// Dir holds the config, socket, state file, pidfile and log.
	Dir string
	// ConfigPath is the rendered configuration.
	ConfigPath string
	// Socket is the admin socket (stats socket, level admin).
	Socket string
	// MasterSocket is the master CLI (show proc, reload).
	MasterSocket string
	// StateFile is the server-state file HAProxy loads on start and reload.
	StateFile string
	// Addr is the frontend's host:port.
	Addr string
	// Backend is the backend's name.
	Backend string

	cfg     Config
	ownDir  bool
	cmd     *exec.Cmd
	logf    *os.File
	done    chan struct{}
	waitErr error
	mu      sync.Mutex // serialises Reload and Stop
	stopped bool
}

// URL is the frontend's base URL, e.g. "http://127.0.0.1:40123".
func (i *HAProxy) URL() string { return "http://" + i.Addr }

// Client returns a runtime API client for the instance's admin socket.
func (i *HAProxy) Client() *runtimeapi.Client { return runtimeapi.NewClient(i.Socket, 5*time.Second) }

// Start renders cfg, starts HAProxy in master-worker mode in the foreground
// (-W -db) and returns once the admin socket answers. The frontend port is
// picked free on loopback unless cfg.Bind is set; a bind race with another
// process is retried on a new port.
func Start(ctx context.Context, cfg Config) (*HAProxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bin, err := findBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	dir, ownDir := cfg.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "upshift-haproxy-"); err != nil {
			return nil, err
		}
		ownDir = true
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		bind := cfg.Bind
		if bind == "" {
			if bind, err = FreeAddr(); err != nil {
				lastErr = err
				break
			}
		}
		inst, err := start(ctx, cfg, bin, dir, bind)
		if err == nil {
			inst.ownDir = ownDir
			return inst, nil
		}
		lastErr = err
		if cfg.Bind != "" || !strings.Contains(err.Error(), "cannot bind") {
			break
		}
	}
	if ownDir {
		os.RemoveAll(dir)
	}
	return nil, lastErr
}

func start(ctx context.Context, cfg Config, bin, dir, bind string) (*HAProxy, error) {
	text, err := Render(cfg, dir, bind)
	if err != nil {
		return nil, err
	}
	i := &HAProxy{
		Dir:          dir,
		ConfigPath:   filepath.Join(dir, configFile),
		Socket:       filepath.Join(dir, socketFile),
		MasterSocket: filepath.Join(dir, masterSocketFile),
		StateFile:    filepath.Join(dir, stateFile),
		Addr:         bind,
		Backend:      cfg.Backend,
		cfg:          cfg,
		done:         make(chan struct{}),
	}
	if err := os.WriteFile(i.ConfigPath, []byte(text), 0o600); err != nil {
		return nil, err
	}
	// Check the config first: a mistake is then an error that says so,
	// not a process that exits at once.
	if out, err := exec.CommandContext(ctx, bin, "-c", "-q", "-f", i.ConfigPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxyd: config check failed: %s", runtimeapi.FirstLines(string(out), 5))
	}
	i.logf, err = os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// Not CommandContext: the instance outlives the ctx that started it.
	i.cmd = exec.Command(bin, "-W", "-db", "-f", i.ConfigPath, "-S", i.MasterSocket+",mode,600")
	i.cmd.Dir = dir
	i.cmd.Stdout = i.logf
	i.cmd.Stderr = i.logf
	i.cmd.SysProcAttr = sysProcAttr()
	if err := i.cmd.Start(); err != nil {
		i.logf.Close()
		return nil, fmt.Errorf("haproxyd: starting %s: %w", bin, err)
	}
	go func() {
		i.waitErr = i.cmd.Wait()
		i.logf.Close()
		close(i.done)
	}()
	if err := i.waitReady(ctx, 10*time.Second, ""); err != nil {
		i.kill()
		return nil, err
	}
	return i, nil
}

// waitReady polls the admin socket until a worker answers `show info` with a
// pid other than notPid.
func (i *HAProxy) waitReady(ctx context.Context, limit time.Duration, notPid string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := runtimeapi.NewClient(i.Socket, time.Second)
	var lastErr error
	for {
		info, err := c.Info(ctx)
		if err == nil && info["Pid"] != "" && info["Pid"] != notPid {
			return nil
		}
		if err != nil {
			lastErr = err
		} else {
			lastErr = fmt.Errorf("worker pid is still %s", notPid)
		}
		select {
		case <-i.done:
			return fmt.Errorf("haproxyd: haproxy exited: %v: %s", i.waitErr, lastLines(i.Log(), 5))
		case <-ctx.Done():
			return fmt.Errorf("haproxyd: haproxy not ready after %s: %v; log: %s", limit, lastErr, lastLines(i.Log(), 5))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Log returns what HAProxy has written to its stdout and stderr.
func (i *HAProxy) Log() string {
	b, _ := os.ReadFile(filepath.Join(i.Dir, logFile))
	return string(b)
}

// MasterPID is the master process's pid.
func (i *HAProxy) MasterPID() int { return i.cmd.Process.Pid }

// SaveState writes `show servers state` to the instance's state file, so
// that the next start or reload restores drain/maint and health.
func (i *HAProxy) SaveState(ctx context.Context) error {
	return i.Client().SaveServerState(ctx, i.StateFile)
}

// Reload reloads HAProxy gracefully: it saves the runtime server state to
// the state file, sends SIGUSR2 to the master, and returns once a new worker
// answers on the admin socket. The old worker finishes its in-flight
// connections (bounded by HardStopAfter) while the new one takes new ones.
func (i *HAProxy) Reload(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return errors.New("haproxyd: reload of a stopped instance")
	}
	info, err := i.Client().Info(ctx)
	if err != nil {
		return fmt.Errorf("haproxyd: before reload: %w", err)
	}
	if err := i.SaveState(ctx); err != nil {
		return fmt.Errorf("haproxyd: saving server state before reload: %w", err)
	}
	return i.reload(ctx, info["Pid"])
}

// ReloadWithoutSave reloads the way an outside `systemctl reload` would: the
// new worker loads whatever state file is on disk (none, or the one the
// haproxy plugin keeps with its state_file setting), and runtime changes not
// in it are lost.
func (i *HAProxy) ReloadWithoutSave(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return errors.New("haproxyd: reload of a stopped instance")
	}
	info, err := i.Client().Info(ctx)
	if err != nil {
		return fmt.Errorf("haproxyd: before reload: %w", err)
	}
	return i.reload(ctx, info["Pid"])
}

func (i *HAProxy) reload(ctx context.Context, oldPid string) error {
	// After each reload the master re-executes itself, and a SIGUSR2 that
	// lands in that window is lost. The master CLI answers only once the
	// master is back in its loop with its signal handlers in place.
	before, err := i.masterReloads(ctx)
	if err != nil {
		return err
	}
	if err := i.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("haproxyd: signalling reload: %w", err)
	}
	if err := i.waitReady(ctx, 10*time.Second, oldPid); err != nil {
		if after, err2 := i.masterReloads(ctx); err2 == nil && after.failed > before.failed {
			return fmt.Errorf("haproxyd: reload failed, the old worker keeps serving; log: %s", lastLines(i.Log(), 5))
		}
		return err
	}
	return nil
}

// procs is what the master CLI's `show proc` says.
type procs struct {
	reloads, failed int
	workers         []int // current and old workers
}

// masterReloads waits until the master CLI answers `show proc` and returns
// the master's reload counters and worker pids.
func (i *HAProxy) masterReloads(ctx context.Context) (procs, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := runtimeapi.NewClient(i.MasterSocket, time.Second)
	for {
		out, err := c.Do(ctx, "show proc")
		if err == nil {
			// "<pid> master <reloads> [failed: <n>] <uptime> <version>"
			// "<pid> worker <reloads> <uptime> <version>"
			var p procs
			found := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(line))
				switch {
				case len(f) >= 5 && f[1] == "master" && f[3] == "failed:":
					p.reloads, _ = strconv.Atoi(f[2])
					p.failed, _ = strconv.Atoi(f[4])
					found = true
				case len(f) >= 2 && f[1] == "worker":
					if pid, err := strconv.Atoi(f[0]); err == nil {
						p.workers = append(p.workers, pid)
					}
				}
			}
			if found {
				return p, nil
			}
			err = fmt.Errorf("unexpected show proc reply: %s", runtimeapi.FirstLines(out, 2))
		}
		select {
		case <-i.done:
			return procs{}, fmt.Errorf("haproxyd: haproxy exited: %v: %s", i.waitErr, lastLines(i.Log(), 5))
		case <-ctx.Done():
			return procs{}, fmt.Errorf("haproxyd: master CLI: %w", err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop stops HAProxy (SIGTERM to the master, which stops its workers; SIGKILL
// to the whole process group after 5s) and removes the directory when Start
// made it. Safe to call more than once.
func (i *HAProxy) Stop() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return nil
	}
	i.stopped = true
	// Workers first: the master reaps them and exits on its own. Signalled
	// first, the master may exit before reaping its workers, which then
	// linger as zombies of whatever process adopts them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	p, err := i.masterReloads(ctx)
	cancel()
	if err == nil {
		for _, pid := range p.workers {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	} else {
		_ = i.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-i.done:
	case <-time.After(5 * time.Second):
	}
	i.kill()
	if i.ownDir {
		return os.RemoveAll(i.Dir)
	}
	return nil
}

// kill ends the master and every worker (they share its process group) and
// waits for the master.
func (i *HAProxy) kill() {
	killGroup(i.cmd.Process.Pid)
	<-i.done
}

// Done is closed when the master process has exited.
func (i *HAProxy) Done() <-chan struct{} { return i.done }

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func findBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy", nil
	}
	return "", errors.New("haproxyd: haproxy not found on PATH nor at /usr/sbin/haproxy")
}

// Available reports whether an haproxy binary can be found, so tests can
// skip with a reason instead of failing where HAProxy is not installed.
func Available() bool {
	_, err := findBinary("")
	return err == nil
}

// Version returns `haproxy -v`'s version, e.g. "2.6.12-1+deb12u4".
func Version() (string, error) {
	bin, err := findBinary("")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "-v").Output()
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(bytes.SplitN(out, []byte("\n"), 2)[0]))
	if len(f) < 3 {
		return "", fmt.Errorf("haproxyd: unexpected version output %q", out)
	}
	return f[2], nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
