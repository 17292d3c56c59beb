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
//
// File operations share one SFTP session per connection, kept open: the
// SFTP protocol carries many requests at once (each with its id, and
// pkg/sftp's client is safe for concurrent use), and each session opened is
// a channel round trip plus a process sshd forks. Opening one per file
// operation (set_config is a read and a write, touch an lstat and a
// create) made them most of a rollout's sessions. The shared session takes
// one of the max_sessions slots for as long as it is open; with
// max_sessions 1 there is no slot to spare, and each file operation opens
// and closes its own.
type host struct {
	user, addr string
	cfg        *sshConfig
	slots      chan struct{}

	mu   sync.Mutex // the connection: dialling, checking, replacing
	link *link      // nil until first use, or after it ended

	fsMu sync.Mutex   // the shared SFTP session
	fs   *sftp.Client // nil until a file operation needs it, or after it ended
}

// link is one SSH connection to the host.
type link struct {
	*ssh.Client
	h    *host
	used time.Time // when it last opened a session (h.mu)

	mu         sync.Mutex
	freed      int  // slots of sessions closed here, not yet given back
	confirming bool // a round trip is on its way to give them back
}

// idleCheck is how long a connection may sit unused before it is checked
// with a keepalive before reuse. One that sshd closed, or that broke, ends
// on its own (watched by ssh.Client.Wait); one dropped silently (a NAT's
// table, a host that vanished) only shows when asked, and is replaced then,
// not found by a command hanging. A connection in use is not asked before
// each session: a round trip per session, under the connection's lock, was
// a queue every session of every node on the host waited in.
const idleCheck = 15 * time.Second

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

// free gives back the slot of a session closed on l, once sshd has let go
// of the session too. sshd counts a session against MaxSessions until it
// has both sent and received the channel's close and then collected the
// channel, which it does between reading batches of packets: a new session
// opened at once, in the same batch as the close, found the old one still
// counted and was refused ("no more sessions", from 50 nodes at once on
// max_sessions 8). So the slot waits for the reply to a keepalive sent
// after the close: sshd answers it after the close is read and collects
// the channel before it reads anything sent later. One round trip gives
// back every slot freed meanwhile, off the path of the command that ended.
func (l *link) free() {
	l.mu.Lock()
	l.freed++
	if l.confirming {
		l.mu.Unlock()
		return
	}
	l.confirming = true
	l.mu.Unlock()
	go func() {
		for {
			l.mu.Lock()
			n := l.freed
			l.freed = 0
			if n == 0 {
				l.confirming = false
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			if !l.h.alive(l.Client) {
				l.Close() // its sessions end with it
			}
			for range n {
				l.h.release()
			}
		}
	}()
}

func (h *host) conn(ctx context.Context) (*link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.link; l != nil {
		if time.Since(l.used) < idleCheck || h.alive(l.Client) {
			l.used = time.Now()
			return l, nil
		}
		l.Close() // its watcher forgets it
		h.link = nil
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
	l := &link{Client: ssh.NewClient(c, chans, reqs), h: h, used: time.Now()}
	h.link = l
	// A connection that ends (sshd restarted, the network cut it, close)
	// is forgotten, so the next session dials anew.
	go func() {
		_ = l.Wait()
		h.mu.Lock()
		if h.link == l {
			h.link = nil
		}
		h.mu.Unlock()
	}()
	return l, nil
}

// alive asks the server for a reply on c, waiting at most the configured
// timeout: a connection dropped silently would never answer.
func (h *host) alive(c *ssh.Client) bool {
	done := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@upshift", true, nil)
		done <- err
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(h.cfg.timeout):
		return false // the caller closes c, which ends SendRequest
	}
}

func (h *host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.link != nil {
		h.link.Close() // the shared SFTP session ends with it
		h.link = nil
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
// reads the session's stdin through descriptor 3. It holds neither the
// session's stdout nor its stderr: sshd closes the channel once the
// command has exited and those are closed, and a watchdog's cat still
// holding one made each step wait for the round trip of the client's EOF
// to end it first, tens of milliseconds per step on a busy host.)
//
// The session's stdin first carries the step's environment (envScript: a
// byte count, then `export` lines), read and evaluated before anything else,
// so variable values never appear on the remote command line. Without
// variables (a count of 0) there is nothing to read: no dd is started.
const stepGuard = `read -r n
[ "$n" = 0 ] || eval "$(dd bs=1 count="$n" 2>/dev/null)"
exec 3<&0
(cat <&3; kill -KILL 0) >/dev/null 2>&1 &
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
	l, err := h.conn(ctx)
	if err != nil {
		h.release()
		return "", "", err
	}
	s, err := l.NewSession()
	if err != nil {
		h.release() // not opened: sshd holds nothing
		return "", "", err
	}
	defer l.free() // after the close
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

// sftpClient is an SFTP session for one file operation; Close gives it
// back (the shared session stays open for the next).
type sftpClient struct {
	*sftp.Client
	release func()
	once    sync.Once
}

// Close ends the file operation's use of the SFTP session.
func (c *sftpClient) Close() error {
	c.once.Do(c.release)
	return nil
}

// sftp returns an SFTP session for a file operation: the host's shared
// one, opened on first use in a slot of its own, or, with max_sessions 1,
// a session of the operation's own.
func (h *host) sftp(ctx context.Context) (*sftpClient, error) {
	if cap(h.slots) < 2 {
		return h.ownSFTP(ctx)
	}
	h.fsMu.Lock()
	defer h.fsMu.Unlock()
	if h.fs == nil {
		fs, l, err := h.openSFTP(ctx)
		if err != nil {
			return nil, err
		}
		h.fs = fs
		// The session ends with its connection (or sftp-server's end): its
		// slot is freed and the next file operation opens a new one.
		go func() {
			_ = fs.Wait()
			h.fsMu.Lock()
			if h.fs == fs {
				h.fs = nil
			}
			h.fsMu.Unlock()
			l.free()
		}()
	}
	return &sftpClient{Client: h.fs, release: func() {}}, nil
}

// ownSFTP opens an SFTP session for one operation, in a slot of its own.
func (h *host) ownSFTP(ctx context.Context) (*sftpClient, error) {
	fs, l, err := h.openSFTP(ctx)
	if err != nil {
		return nil, err
	}
	return &sftpClient{Client: fs, release: func() {
		_ = fs.Close()
		_ = fs.Wait() // the channel closed both ways, as free needs
		l.free()
	}}, nil
}

// openSFTP opens an SFTP session in a slot it takes.
func (h *host) openSFTP(ctx context.Context) (*sftp.Client, *link, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, nil, err
	}
	l, err := h.conn(ctx)
	if err != nil {
		h.release()
		return nil, nil, err
	}
	fs, err := sftp.NewClient(l.Client)
	if err != nil {
		// Opened or not, a channel may have been: give the slot back as
		// for a closed session.
		l.free()
		return nil, nil, fmt.Errorf("sftp: %w", err)
	}
	return fs, l, nil
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
