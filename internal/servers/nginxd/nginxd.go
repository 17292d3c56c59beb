// Package nginxd runs a real nginx for upshift's tests and the demo lab: a
// config rendered for one loopback listener proxying to one upstream file
// (which the nginx plugin edits through nginxctl), started, reloaded and
// stopped without leaving processes behind.
package nginxd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Config describes the nginx to run: one listener on loopback proxying
// everything to one upstream, with every file in Dir.
type Config struct {
	// Servers of the upstream, in order.
	Servers []nginxctl.Server
	// Dir holds nginx.conf, upstream.conf, the pid file, logs and temp
	// folders. Required.
	Dir string
	// Bind is the listen address; default a free loopback port.
	Bind string
	// Upstream is the upstream block's name; default "app".
	Upstream string
	// Binary is nginx's path; default as nginxctl.Binary("").
	Binary string
	// Balance is the upstream's load-balancing directive, without its
	// `;` ("hash $cookie_platform_session consistent" for session
	// affinity); default round robin.
	Balance string
	// WorkerProcesses defaults to 2, so a reload has several old workers
	// to wait for, as in production.
	WorkerProcesses int
}

// Nginx is an nginx started by Start or StartWith, or named by its
// files (the lab rebuilds one from its state).
type Nginx struct {
	Dir      string
	Conf     string // main configuration
	Upstream string // the upstream file, included by Conf
	PidFile  string
	Addr     string // listen address
	Name     string // upstream block name
	Bin      string // nginx binary; empty: as nginxctl.Binary("")

	// ErrorLog and AccessLog are in Dir; the access log records the
	// upstream server of every request.
	ErrorLog, AccessLog string
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start renders a config in dir listening on addr, proxying to the
// upstream name of servers, and starts nginx detached. It is StartWith
// for callers that predate Config.
func Start(ctx context.Context, dir, addr, name string, servers []nginxctl.Server) (*Nginx, error) {
	return StartWith(ctx, Config{Dir: dir, Bind: addr, Upstream: name, Servers: servers})
}

// StartWith renders cfg into cfg.Dir, checks it with `nginx -t`, and
// starts nginx as a daemon in its own session (it outlives the caller, as
// the lab needs; tests Stop it in t.Cleanup). It returns once the master
// has written its pid file and every worker runs.
func StartWith(ctx context.Context, cfg Config) (*Nginx, error) {
	if cfg.Dir == "" {
		return nil, errors.New("nginxd: Config.Dir is required")
	}
	bin, err := nginxctl.Binary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	if cfg.Upstream == "" {
		cfg.Upstream = "app"
	}
	if cfg.WorkerProcesses == 0 {
		cfg.WorkerProcesses = 2
	}
	if cfg.Bind == "" {
		if cfg.Bind, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	i := &Nginx{
		Dir: dir, Conf: filepath.Join(dir, "nginx.conf"), Upstream: filepath.Join(dir, "upstream.conf"),
		PidFile: filepath.Join(dir, "nginx.pid"), Addr: cfg.Bind, Name: cfg.Upstream, Bin: bin,
		ErrorLog: filepath.Join(dir, "error.log"), AccessLog: filepath.Join(dir, "access.log"),
	}
	if nginxctl.MasterPID(i.PidFile) != 0 {
		return nil, fmt.Errorf("an nginx already runs from %s (pid file %s)", dir, i.PidFile)
	}
	if err := fsutil.WriteFile(i.Upstream, []byte(nginxctl.RenderUpstreamBalanced(cfg.Upstream, cfg.Servers, cfg.Balance)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(i.Conf, []byte(renderConf(i, cfg.WorkerProcesses)), 0o644); err != nil {
		return nil, err
	}
	ctl := i.Ctl()
	if err := ctl.Test(ctx); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, nginxctl.CmdTimeout)
	defer cancel()
	// With `daemon on` this process forks the master and exits; -e sends
	// nginx's own start-up messages to the instance's log, not /var/log.
	cmd := exec.CommandContext(cctx, bin, "-c", i.Conf, "-e", i.ErrorLog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = i.Stop()
		return nil, fmt.Errorf("starting nginx -c %s: %v: %s", i.Conf, err, nginxctl.OneLine(string(out)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := nginxctl.MasterPID(i.PidFile); m != 0 && len(nginxctl.Workers(m)) >= cfg.WorkerProcesses {
			return i, nil
		}
		if time.Now().After(deadline) {
			_ = i.Stop()
			return nil, fmt.Errorf("nginx -c %s did not start within 5s: %s", i.Conf, i.lastLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// renderConf is the main configuration. Choices that matter for rolling
// upgrades are commented in the file itself.
func renderConf(i *Nginx, workers int) string {
	tmp := filepath.Join(i.Dir, "tmp")
	return fmt.Sprintf(`# Written by upshift's nginxd. The upstream is in %[4]s, which upshift edits.
daemon on;
master_process on;
worker_processes %[7]d;
pid %[1]s;
error_log %[2]s notice;
events { worker_connections 1024; }
http {
    log_format upshift '$remote_addr [$time_local] "$request" $status upstream=$upstream_addr upstream_status=$upstream_status $request_time';
    access_log %[8]s upshift;
    client_body_temp_path %[3]s/body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    include %[4]s;
    server {
        listen %[5]s;
        # An idle client connection is closed by an old worker on reload;
        # a short timeout keeps such connections few.
        keepalive_timeout 5s;
        location / {
            proxy_pass http://%[6]s;
            # No upstream keepalive: each request gets its own connection to
            # its server, so nothing is replayed on a stale cached one and a
            # request cut by a dying server is seen by the client.
            # A refused connection, a timeout or a 502 is tried on the next
            # server; a POST already sent is never replayed (no
            # non_idempotent), so it fails visibly instead.
            proxy_next_upstream error timeout http_502;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 5s;
            proxy_connect_timeout 1s;
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
        }
    }
}
`, i.PidFile, i.ErrorLog, tmp, i.Upstream, i.Addr, i.Name, workers, i.AccessLog)
}

// URL is the listener's base URL, e.g. "http://127.0.0.1:40123".
func (i *Nginx) URL() string { return "http://" + i.Addr }

// Ctl drives the instance: test, reload.
func (i *Nginx) Ctl() nginxctl.Ctl {
	bin := i.Bin
	if bin == "" {
		bin, _ = nginxctl.Binary("")
	}
	return nginxctl.Ctl{Binary: bin, Conf: i.Conf, PidFile: i.PidFile}
}

// MasterPID is the live master's pid, or 0.
func (i *Nginx) MasterPID() int { return nginxctl.MasterPID(i.PidFile) }

// Running reports whether the master is alive.
func (i *Nginx) Running() bool { return i.MasterPID() != 0 }

// Reload checks the configuration, reloads, and waits (up to timeout) for
// the old workers to finish their requests.
func (i *Nginx) Reload(ctx context.Context, timeout time.Duration) error {
	ctl := i.Ctl()
	if err := ctl.Test(ctx); err != nil {
		return err
	}
	old, err := ctl.Reload(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	_, err = nginxctl.WaitExited(ctx, old, timeout, nil)
	return err
}

// Stop ends nginx, master and workers (SIGTERM to the master, SIGKILL to
// all after 5s), and waits until they are gone: no orphans.
func (i *Nginx) Stop() error {
	master := i.MasterPID()
	if master == 0 {
		return nil
	}
	procs := append([]int{master}, nginxctl.Workers(master)...)
	for _, p := range procfs.Children(master) { // cache processes, if any
		if !slices.Contains(procs, p.Pid) {
			procs = append(procs, p.Pid)
		}
	}
	_ = syscall.Kill(master, syscall.SIGTERM)
	if _, err := nginxctl.WaitExited(context.Background(), procs, 5*time.Second, nil); err != nil {
		for _, p := range procs {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if _, err := nginxctl.WaitExited(context.Background(), procs, 2*time.Second, nil); err != nil {
			return fmt.Errorf("nginx (master pid %d) survived SIGKILL", master)
		}
		return fmt.Errorf("nginx (master pid %d) did not stop within 5s of SIGTERM; killed", master)
	}
	return nil
}

// lastLog is the last lines of the error log, on one line.
func (i *Nginx) lastLog() string {
	b, err := os.ReadFile(i.ErrorLog)
	if err != nil {
		return "no error log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}
