// Package nginxd owns running nginx as a load balancer for upshift: the
// upstream file that upshift manages (one line per server, `down` for a
// server out of rotation), config rendering for the demo lab and tests, a
// checked graceful reload, and waiting for the workers of the previous
// configuration to finish their in-flight requests.
package nginxd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is one upstream server.
type Server struct {
	Name string
	Addr string
	Down bool
}

var lineRE = regexp.MustCompile(`^\s*server\s+(\S+)(.*?);\s*#\s*(\S+)\s*$`)

// ReadUpstream parses an upstream file written by WriteUpstream.
func ReadUpstream(path string) ([]Server, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Server
	for _, l := range strings.Split(string(b), "\n") {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		out = append(out, Server{Name: m[3], Addr: m[1], Down: strings.Contains(m[2], " down")})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("upstream file %s has no `server ADDR; # NAME` lines", path)
	}
	return out, nil
}

// RenderUpstream is the upstream block for servers.
func RenderUpstream(name string, servers []Server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by upshift: one server per line, named in its comment.\nupstream %s {\n", name)
	for _, s := range servers {
		down := ""
		if s.Down {
			down = " down"
		}
		fmt.Fprintf(&b, "    server %s max_fails=1 fail_timeout=2s%s; # %s\n", s.Addr, down, s.Name)
	}
	b.WriteString("}\n")
	return b.String()
}

// WriteUpstream writes the file atomically.
func WriteUpstream(path, name string, servers []Server) error {
	tmp := path + ".upshift-tmp"
	if err := os.WriteFile(tmp, []byte(RenderUpstream(name, servers)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Binary finds nginx.
func Binary(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx not found on PATH or at /usr/sbin/nginx")
}

// Test runs `nginx -t` on a config.
func Test(ctx context.Context, bin, conf string) error {
	out, err := exec.CommandContext(ctx, bin, "-t", "-q", "-c", conf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -t -c %s: %s", conf, strings.TrimSpace(string(out)))
	}
	return nil
}

// MasterPID reads the master's pid file; 0 when there is no live master.
func MasterPID(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !alive(pid) {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// Workers lists the master's worker processes.
func Workers(master int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(master) && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// Reload checks conf, then reloads nginx gracefully (SIGHUP to the master)
// and waits until every worker of the previous configuration has exited,
// which they do once their in-flight requests are done. progress gets a
// line while it waits.
func Reload(ctx context.Context, bin, conf, pidFile string, timeout time.Duration, progress func(string, ...any)) error {
	if err := Test(ctx, bin, conf); err != nil {
		return err
	}
	master := MasterPID(pidFile)
	if master == 0 {
		return fmt.Errorf("nginx is not running (no live master in %s)", pidFile)
	}
	old := Workers(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reloading nginx (pid %d): %w", master, err)
	}
	deadline := time.Now().Add(timeout)
	last := time.Time{}
	for {
		left := 0
		for _, w := range old {
			if alive(w) {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d nginx workers of the previous configuration still serve requests after %s", left, timeout)
		}
		if time.Since(last) > time.Second {
			progress("waiting for %d old nginx workers to finish their requests", left)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Instance is an nginx started by Start, for the lab and tests.
type Instance struct {
	Dir, Conf, Upstream, PidFile, Addr, Name string
	Bin                                      string
}

// Start renders a config in dir (listening on addr, proxying to the
// upstream `name` of servers) and starts nginx detached, in its own session.
func Start(ctx context.Context, dir, addr, name string, servers []Server) (*Instance, error) {
	bin, err := Binary("")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	i := &Instance{Dir: dir, Conf: filepath.Join(dir, "nginx.conf"), Upstream: filepath.Join(dir, "upstream.conf"), PidFile: filepath.Join(dir, "nginx.pid"), Addr: addr, Name: name, Bin: bin}
	if err := WriteUpstream(i.Upstream, name, servers); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "tmp")
	conf := fmt.Sprintf(`# Written by upshift nginxd.
daemon on;
worker_processes 1;
pid %[1]s;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[3]s/body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    include %[4]s;
    server {
        listen %[5]s;
        location / {
            proxy_pass http://%[6]s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # A refused connection is tried on the next server; a request
            # already sent is not (POST is never replayed).
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }
    }
}
`, i.PidFile, dir, tmp, i.Upstream, addr, name)
	if err := os.WriteFile(i.Conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := Test(ctx, bin, i.Conf); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", i.Conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("starting nginx: %v: %s", err, strings.TrimSpace(string(out)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for MasterPID(i.PidFile) == 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nginx did not write %s", i.PidFile)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return i, nil
}

// Running reports whether the master is alive.
func (i *Instance) Running() bool { return MasterPID(i.PidFile) != 0 }

// Stop ends nginx (master and workers) and waits until they are gone.
func (i *Instance) Stop() error {
	master := MasterPID(i.PidFile)
	if master == 0 {
		return nil
	}
	workers := Workers(master)
	_ = syscall.Kill(master, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := alive(master)
		for _, w := range workers {
			left = left || alive(w)
		}
		if !left {
			return nil
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(master, syscall.SIGKILL)
			for _, w := range workers {
				_ = syscall.Kill(w, syscall.SIGKILL)
			}
			return fmt.Errorf("nginx (pid %d) did not stop in 5s; killed", master)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
