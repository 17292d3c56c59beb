package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// quote makes one argument safe for a POSIX shell: single quotes around it,
// each single quote inside closed, escaped and reopened.
func quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine turns an argument vector into the one string SSH carries,
// so that the remote shell gives the program exactly these arguments.
func commandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

// sshConfig is how to reach hosts: who we are and whom we trust.
type sshConfig struct {
	knownHosts string
	tofu       bool
	auth       []ssh.AuthMethod
	timeout    time.Duration
	mu         sync.Mutex // known_hosts appends
}

func (c *sshConfig) hostKeyCallback() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(c.knownHosts); errors.Is(err, os.ErrNotExist) && c.tofu {
		if err := os.WriteFile(c.knownHosts, nil, 0o600); err != nil {
			return nil, err
		}
	}
	check, err := knownhosts.New(c.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", c.knownHosts, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			if !c.tofu {
				return fmt.Errorf("host key of %s (%s %s) is not in %s; add it, or set trust_on_first_use = true", host, key.Type(), ssh.FingerprintSHA256(key), c.knownHosts)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			f, err := os.OpenFile(c.knownHosts, os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString(knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n")
			return err
		}
		if errors.As(err, &ke) {
			return fmt.Errorf("host key of %s (%s %s) does not match %s: refusing to connect (a changed key may mean someone is in the middle)", host, key.Type(), ssh.FingerprintSHA256(key), c.knownHosts)
		}
		return err
	}, nil
}

// authMethods loads a private key file and/or the agent.
func authMethods(keyFile, passphrase string) ([]ssh.AuthMethod, error) {
	var out []ssh.AuthMethod
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		var signer ssh.Signer
		if passphrase != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase(b, []byte(passphrase))
		} else {
			signer, err = ssh.ParsePrivateKey(b)
		}
		if err != nil {
			return nil, fmt.Errorf("private key %s: %v", keyFile, err)
		}
		out = append(out, ssh.PublicKeys(signer))
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			out = append(out, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no private_key_file and no SSH agent: nothing to authenticate with")
	}
	return out, nil
}

// host is one connection to a node's host, opened on first use and reused
// by every node on that host, with at most max_sessions sessions open on it
// at once (sshd refuses more than its MaxSessions).
type host struct {
	user, addr string
	cfg        *sshConfig
	mu         sync.Mutex
	client     *ssh.Client
	slots      chan struct{}
}

func newHost(user, addr string, cfg *sshConfig, maxSessions int) *host {
	return &host{user: user, addr: addr, cfg: cfg, slots: make(chan struct{}, maxSessions)}
}

// acquire waits for a session slot on the host.
func (h *host) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *host) release() { <-h.slots }

func (h *host) conn(ctx context.Context) (*ssh.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != nil {
		// A dead connection is replaced.
		if _, _, err := h.client.SendRequest("keepalive@upshift", true, nil); err == nil {
			return h.client, nil
		}
		h.client.Close()
		h.client = nil
	}
	cb, err := h.cfg.hostKeyCallback()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: h.cfg.timeout}
	raw, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %v", h.addr, err)
	}
	_ = raw.SetDeadline(time.Now().Add(h.cfg.timeout))
	c, chans, reqs, err := ssh.NewClientConn(raw, h.addr, &ssh.ClientConfig{User: h.user, Auth: h.cfg.auth, HostKeyCallback: cb, Timeout: h.cfg.timeout})
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh %s@%s: %v", h.user, h.addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	h.client = ssh.NewClient(c, chans, reqs)
	return h.client, nil
}

func (h *host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != nil {
		h.client.Close()
		h.client = nil
	}
}

// run runs a command line remotely; a non-zero exit is an *ssh.ExitError.
func (h *host) run(ctx context.Context, line string, timeout time.Duration) (string, string, error) {
	return h.session(ctx, line, nil, timeout)
}

// stepGuard runs a step's command on the node's host so that it dies with
// the step and with the plugin. sshd starts the command line in a process
// group of its own; the guard's watchdog reads its stdin, which the plugin
// holds open for the step: at its end (the step cancelled, the connection
// lost because the plugin died) the watchdog SIGKILLs the whole group. A
// command that ends normally stops the watchdog first.
//
// (A background job's stdin is /dev/null unless redirected: the watchdog
// reads the session's stdin through descriptor 3.)
//
// The session's stdin first carries the step's environment (envScript: a
// byte count, then `export` lines), read and evaluated before anything else,
// so variable values never appear on the remote command line.
const stepGuard = `read -r n
eval "$(dd bs=1 count="$n" 2>/dev/null)"
exec 3<&0
(cat <&3 >/dev/null; kill -KILL 0) &
w=$!
exec 3<&-
"$@" </dev/null &
wait $!
s=$?
kill -KILL $w 2>/dev/null
exit $s`

// runStep runs argv remotely under stepGuard; a non-zero exit is an
// *ssh.ExitError.
func (h *host) runStep(ctx context.Context, argv []string, env map[string]string, timeout time.Duration) (string, string, error) {
	script, err := envScript(env)
	if err != nil {
		return "", "", err
	}
	stdin, hold := io.Pipe()
	defer hold.Close()
	go func() { _, _ = io.WriteString(hold, script) }() // returns when read, or when hold closes
	return h.session(ctx, "sh -c "+quote(stepGuard)+" upshift-step "+commandLine(argv), stdin, timeout)
}

func (h *host) session(ctx context.Context, line string, stdin io.Reader, timeout time.Duration) (string, string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", "", err
	}
	defer h.release()
	c, err := h.conn(ctx)
	if err != nil {
		return "", "", err
	}
	s, err := c.NewSession()
	if err != nil {
		return "", "", err
	}
	defer s.Close()
	var stdout, stderr limited
	s.Stdout, s.Stderr, s.Stdin = &stdout, &stderr, stdin
	done := make(chan error, 1)
	go func() { done <- s.Run(line) }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		err = fmt.Errorf("command timed out after %s", timeout)
		if !cut(s, done) {
			return "", "", err
		}
	case <-ctx.Done():
		err = ctx.Err()
		if !cut(s, done) {
			return "", "", err
		}
	}
	return stdout.String(), stderr.String(), err
}

// cut ends a session whose command runs too long: SIGKILL (where sshd
// passes signals on), the channel closed (a step's guard then kills the
// command's group), and Run waited for, so the output buffers are no
// longer written when they are read; false when Run did not return.
func cut(s *ssh.Session, done <-chan error) bool {
	_ = s.Signal(ssh.SIGKILL)
	_ = s.Close()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// sftpClient is an SFTP session that gives its slot back when closed.
type sftpClient struct {
	*sftp.Client
	release func()
	once    sync.Once
}

// Close ends the SFTP session and frees its slot.
func (c *sftpClient) Close() error {
	err := c.Client.Close()
	c.once.Do(c.release)
	return err
}

func (h *host) sftp(ctx context.Context) (*sftpClient, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	c, err := h.conn(ctx)
	if err != nil {
		h.release()
		return nil, err
	}
	s, err := sftp.NewClient(c)
	if err != nil {
		h.release()
		return nil, fmt.Errorf("sftp: %w", err)
	}
	return &sftpClient{Client: s, release: h.release}, nil
}

type limited struct{ bytes.Buffer }

func (b *limited) Write(p []byte) (int, error) {
	if room := 64<<10 - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
