// Package sshd runs a real sshd on a free loopback port for tests and the
// demo lab: a temporary host key, one authorized client key, SFTP, no passwords. It
// needs root (sshd's privilege separation) and openssh-server.
package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Server is a running sshd and what a client needs to reach it.
type Server struct {
	Addr       string // 127.0.0.1:port
	KnownHosts string // a known_hosts file with its key
	ClientKey  string // an authorized private key (OpenSSH format)
	HostKey    ssh.PublicKey
	Dir        string
}

func keyPair(path string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

// Start starts sshd in the foreground of the test; t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sshd for tests needs root")
	}
	s, cmd, exited, err := start(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return s
}

// StartDetached starts sshd as a daemon in dir, outliving this process (the
// demo lab uses it); Stop ends it.
func StartDetached(dir string) (*Server, error) {
	s, _, _, err := start(dir, true)
	return s, err
}

// Stop ends a detached sshd started in dir and the connections it serves
// (each its own process, started with the same config, which outlives the
// listener otherwise): SIGTERM, then SIGKILL if they linger. A pid file
// naming a process that is gone, a zombie, or not this dir's sshd (the pid
// was reused) is removed without signalling anyone.
func Stop(dir string) error {
	pidFile := filepath.Join(dir, "sshd.pid")
	pid := procfs.ReadPidFile(pidFile)
	if pid == 0 || !ours(pid, dir) {
		_ = os.Remove(pidFile)
		return nil
	}
	// An authenticated session renames itself ("sshd: root@notty"), so it
	// is known as the listener's child; a connection still starting, by
	// its command line. Each is checked again before every signal: a pid
	// that is no longer an sshd is not ours any more.
	sessions := procfs.Pids(procfs.Children(pid))
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for i := 0; i < 100; i++ {
			left := processesOf(dir)
			for _, p := range sessions {
				if isSSHD(p) && !slices.Contains(left, p) {
					left = append(left, p)
				}
			}
			if len(left) == 0 {
				_ = os.Remove(pidFile)
				return nil
			}
			if i == 0 {
				for _, p := range left {
					_ = syscall.Kill(p, sig)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return fmt.Errorf("sshd (pid %d, %s) did not stop after SIGKILL", pid, dir)
}

// ours reports whether pid is a live sshd started with dir's config: its
// argument vector (a connection being set up: sshd -e -f CONFIG -R) or
// the title the listener gives itself ("sshd: /usr/sbin/sshd -e -f CONFIG
// [listener] ...") names exactly that config. An editor or a grep with
// the path on its command line is not an sshd.
func ours(pid int, dir string) bool {
	p, ok := procfs.Read(pid)
	if !ok || !p.Live() || len(p.Args) == 0 {
		return false
	}
	config := filepath.Join(dir, "sshd_config")
	if filepath.Base(p.Args[0]) == "sshd" {
		for i := 1; i+1 < len(p.Args); i++ {
			if p.Args[i] == "-f" && p.Args[i+1] == config {
				return true
			}
		}
		return false
	}
	title := p.Title()
	return strings.HasPrefix(title, "sshd: ") && (strings.Contains(title, " -f "+config+" ") || strings.HasSuffix(title, " -f "+config))
}

// isSSHD reports whether pid is a live process of sshd's, by its name or
// the title sshd gives its processes.
func isSSHD(pid int) bool {
	p, ok := procfs.Read(pid)
	return ok && p.Live() && len(p.Args) > 0 && (filepath.Base(p.Args[0]) == "sshd" || strings.HasPrefix(p.Args[0], "sshd: "))
}

// processesOf lists the live processes started with dir's sshd config: the
// listener and a process per connection.
func processesOf(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && ours(pid, dir) {
			out = append(out, pid)
		}
	}
	return out
}

// start starts sshd in dir. In the foreground (not detached), exited is
// closed once the sshd it returns has exited (it is waited for there).
func start(dir string, detached bool) (*Server, *exec.Cmd, chan struct{}, error) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		return nil, nil, nil, fmt.Errorf("sshd is not installed (openssh-server): run .ci/setup")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, err
	}
	s := &Server{Dir: dir, KnownHosts: filepath.Join(dir, "known_hosts"), ClientKey: filepath.Join(dir, "client_key")}
	hostPub, err := keyPair(filepath.Join(dir, "host_key"))
	if err != nil {
		return nil, nil, nil, err
	}
	s.HostKey = hostPub
	clientPub, err := keyPair(s.ClientKey)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return nil, nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	s.Addr = l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(s.Addr)
	// Every command a client runs is its login shell's `-c`, and bash run
	// by sshd reads ~/.bashrc even when not interactive: the home of the
	// machine's root is not the host under test's (a developer's .bashrc
	// that runs `pyenv init` cost 1 to 2 s per command, which any test or
	// benchmark then measured instead of itself). Sessions get a home of
	// their own in dir, empty; SetEnv overrides the HOME sshd sets from
	// the passwd entry. UseDNS no: no reverse lookup of 127.0.0.1 on each
	// connection.
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, nil, nil, err
	}
	cfg := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
SetEnv HOME=%s
PidFile %s
Subsystem sftp internal-sftp
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), home, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return nil, nil, nil, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	args := []string{"-e", "-f", filepath.Join(dir, "sshd_config")}
	if !detached {
		args = append([]string{"-D"}, args...)
	}
	cmd := exec.Command(sshd, args...)
	log, err := os.OpenFile(filepath.Join(dir, "sshd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Run(); err != nil { // sshd forks its daemon and returns
			return nil, nil, nil, fmt.Errorf("starting sshd: %w", err)
		}
	} else if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	exited := make(chan struct{})
	if !detached {
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
	}
	// Ready is listening and, for a daemon, its pid file written (sshd
	// writes it after it listens; Stop needs it).
	ready := func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return !detached || ours(procfs.ReadPidFile(filepath.Join(dir, "sshd.pid")), dir)
	}
	// Not ready is failure only once sshd has exited (a bad config, the
	// port taken meanwhile): how long it takes to listen depends on the
	// machine's load, and a fixed wait failed tests on a busy one. The
	// detached daemon is looked for by its config; a start that neither
	// listens nor ends within minutes is a hang, reported as one.
	gone := func() bool {
		if detached {
			return len(processesOf(dir)) == 0
		}
		select {
		case <-exited:
			return true
		default:
			return false
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !ready() {
		if gone() || time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			if !detached {
				_ = cmd.Process.Kill()
				<-exited
			} else {
				for _, p := range processesOf(dir) { // no pid file to Stop by yet
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
			return nil, nil, nil, fmt.Errorf("sshd did not listen on %s: %s", s.Addr, strings.TrimSpace(string(b)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, hostPub)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		return nil, nil, nil, err
	}
	return s, cmd, exited, nil
}
