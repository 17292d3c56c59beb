package haproxyd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Detached is an HAProxy started to outlive the process that started it,
// as the demo lab needs: master-worker mode, daemonised, pid in a file.
type Detached struct {
	Dir        string
	ConfigPath string
	Socket     string
	StateFile  string
	PidFile    string
	Addr       string
	Backend    string
}

// StartDetached renders cfg into cfg.Dir (required), checks it, and starts
// HAProxy in the background in its own session. It returns once the admin
// socket answers.
func StartDetached(ctx context.Context, cfg Config) (*Detached, error) {
	if cfg.Dir == "" {
		return nil, errors.New("haproxyd: StartDetached needs a Dir")
	}
	bin, err := findBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	bind := cfg.Bind
	if bind == "" {
		if bind, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	text, err := Render(cfg, cfg.Dir, bind)
	if err != nil {
		return nil, err
	}
	d := DetachedAt(cfg.Dir)
	d.Addr, d.Backend = bind, cfg.withDefaults().Backend
	if err := os.WriteFile(d.ConfigPath, []byte(text), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-q", "-f", d.ConfigPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxyd: config check failed: %s", runtimeapi.FirstLines(string(out), 5))
	}
	logf, err := os.OpenFile(filepath.Join(cfg.Dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-W", "-D", "-f", d.ConfigPath)
	cmd.Dir = cfg.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// With -D the command returns once the master has daemonised.
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("haproxyd: starting %s: %w", bin, err)
	}
	c := runtimeapi.NewClient(d.Socket, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Info(ctx); err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			_ = d.Stop()
			return nil, fmt.Errorf("haproxyd: %s does not answer after 10s", d.Socket)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DetachedAt names the files of a detached HAProxy in dir.
func DetachedAt(dir string) *Detached {
	return &Detached{
		Dir:        dir,
		ConfigPath: filepath.Join(dir, configFile),
		Socket:     filepath.Join(dir, socketFile),
		StateFile:  filepath.Join(dir, stateFile),
		PidFile:    filepath.Join(dir, pidFile),
	}
}

// MasterPID is the master's pid from the pid file, or 0.
func (d *Detached) MasterPID() int { return procfs.ReadPidFile(d.PidFile) }

// Running reports whether the master process is alive.
func (d *Detached) Running() bool {
	pid := d.MasterPID()
	return procfs.Alive(pid)
}

// Stop ends the master and its workers and waits until they are gone.
func (d *Detached) Stop() error {
	pid := d.MasterPID()
	if pid <= 0 || !d.Running() {
		return nil
	}
	workers := procfs.Pids(procfs.Children(pid))
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for d.Running() || procfs.AnyAlive(workers) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for _, w := range workers {
				_ = syscall.Kill(w, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.Running() {
		return fmt.Errorf("haproxyd: master pid %d did not stop", pid)
	}
	_ = os.Remove(d.PidFile)
	return nil
}
