package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the ssh plugin.
const Version = "0.1.0"

var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "known_hosts", Type: cty.String, Required: true, Description: "known_hosts file the hosts' keys are checked against."},
	{Name: "trust_on_first_use", Type: cty.Bool, Description: "Accept and record the key of a host not in known_hosts yet. Default false: an unknown key is refused."},
	{Name: "user", Type: cty.String, Description: "User to log in as, unless a node says otherwise. Default root."},
	{Name: "private_key_file", Type: cty.String, Description: "Private key to authenticate with; the SSH agent (SSH_AUTH_SOCK) is used as well when present."},
	{Name: "passphrase", Type: cty.String, Sensitive: true, Description: "Passphrase of the private key."},
	{Name: "timeout", Type: cty.String, Description: "Deadline of connecting and of each remote command of upshift's own. Default 15s."},
	{Name: "read_only_path", Type: cty.String, Description: "Read-only admin endpoint path, for nodes without read_only_url. Default /admin/read-only."},
}}

func newPlugin() *sdk.Plugin {
	h := &handler{}
	k := schema.KindNodePool
	a := func(name string, run func(context.Context, *sdk.Request) (cty.Value, error)) *sdk.Action {
		return &sdk.Action{Schema: schema.ContractAction(k, name), Run: run}
	}
	return &sdk.Plugin{
		Name: "ssh", Version: Version, Kind: k, Config: configSchema, Configure: h.configure,
		Actions: []*sdk.Action{
			a("start", h.start), a("stop", h.stop), a("exec", h.exec), a("set_config", h.setConfig),
			a("touch", h.touch), a("read_only", h.readOnly), a("wait_healthy", h.waitHealthy), a("backup_data", h.backupData),
		},
	}
}

// node is a node on a remote host: the process contract plus host and user.
type node struct {
	localnode.Node // names, paths, command, URLs (paths are on the remote host)
	host           *host
	mu             sync.Mutex
	// Service commands, when the node's service is run by systemd or an
	// init script: start_command, stop_command and status_command (exit 0
	// while running). Without them the plugin runs `command` detached with
	// a pid file, as the process plugin does.
	startCmd, stopCmd, statusCmd []string
}

// managed reports whether the node's service is run by configured commands.
func (n *node) managed() bool { return len(n.startCmd) > 0 }

// running asks the status command, or the pid file.
func (n *node) running(ctx context.Context) (bool, error) {
	if n.managed() {
		_, _, err := n.host.run(ctx, commandLine(n.statusCmd), n.host.cfg.timeout)
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			return false, nil
		}
		return err == nil, err
	}
	pid, err := n.remotePid(ctx)
	return pid != 0, err
}

// runService runs a configured service command.
func (n *node) runService(ctx context.Context, what string, argv []string, timeout time.Duration) error {
	if _, stderr, err := n.host.run(ctx, commandLine(argv), timeout); err != nil {
		return fmt.Errorf("node %s: %s (%s): %v %s", n.Name, what, strings.Join(argv, " "), err, strings.TrimSpace(stderr))
	}
	return nil
}

type handler struct {
	cfg   *sshConfig
	nodes map[string]*node
}

var str = localnode.Attr

func (h *handler) configure(_ context.Context, req plugins.ConfigureRequest) error {
	c := req.Config
	h.cfg = &sshConfig{knownHosts: str(c, "known_hosts"), timeout: 15 * time.Second}
	if v := c.GetAttr("trust_on_first_use"); !v.IsNull() {
		h.cfg.tofu = v.True()
	}
	if t := str(c, "timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return sdk.ArgError("timeout", "%q is not a positive duration", t)
		}
		h.cfg.timeout = d
	}
	auth, err := authMethods(str(c, "private_key_file"), str(c, "passphrase"))
	if err != nil {
		return sdk.ArgError("private_key_file", "%s", err)
	}
	h.cfg.auth = auth
	user := str(c, "user")
	if user == "" {
		user = "root"
	}
	roPath := str(c, "read_only_path")
	if roPath == "" {
		roPath = "/admin/read-only"
	}
	h.nodes = map[string]*node{}
	if req.Nodes.IsNull() {
		return errors.New("an ssh node pool needs a list of nodes")
	}
	for it := req.Nodes.ElementIterator(); it.Next(); {
		_, v := it.Element()
		ln, err := localnode.FromValue(v, roPath, "host")
		if err != nil {
			return err
		}
		n := &node{Node: *ln, startCmd: localnode.Strings(v, "start_command"), stopCmd: localnode.Strings(v, "stop_command"), statusCmd: localnode.Strings(v, "status_command")}
		if n.managed() && (len(n.stopCmd) == 0 || len(n.statusCmd) == 0) {
			return fmt.Errorf("node %q has a start_command but not both stop_command and status_command", n.Name)
		}
		u := str(v, "user")
		if u == "" {
			u = user
		}
		hostAddr := str(v, "host")
		n.host = &host{node: n.Name, user: u, addr: hostAddr, cfg: h.cfg}
		h.nodes[n.Name] = n
	}
	return nil
}

func result(r *sdk.Request, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindNodePool, r.Action), attrs)
}

func (h *handler) node(r *sdk.Request) (*node, func(), error) {
	n := h.nodes[r.String("node")]
	if n == nil {
		var names []string
		for k := range h.nodes {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, nil, sdk.ArgError("node", "no node named %q in this pool (nodes: %v)", r.String("node"), names)
	}
	n.mu.Lock()
	return n, n.mu.Unlock, nil
}

// remotePid returns the pid of the node's process on its host, or 0.
func (n *node) remotePid(ctx context.Context) (int, error) {
	line := "pid=$(cat " + quote(n.PidFile) + " 2>/dev/null) && kill -0 \"$pid\" 2>/dev/null && echo \"$pid\" && tr '\\0' '\\n' < /proc/$pid/cmdline | head -n 1"
	out, _, err := n.host.run(ctx, line, n.host.cfg.timeout)
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) < 2 || path.Base(f[1]) != path.Base(n.Command[0]) {
		return 0, nil // gone, or the pid belongs to another program now
	}
	return strconv.Atoi(f[0])
}

func (h *handler) start(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	timeout, err := r.Duration("timeout", 30*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	done := func() (cty.Value, error) { return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)}) }
	if n.managed() {
		if up, err := n.running(ctx); err != nil {
			return cty.NilVal, err
		} else if up {
			r.Progress("already running")
			return done()
		}
		if err := n.runService(ctx, "starting", n.startCmd, timeout); err != nil {
			return cty.NilVal, err
		}
		deadline := time.Now().Add(timeout)
		for {
			if c, err := net.DialTimeout("tcp", n.Address, time.Second); err == nil {
				c.Close()
				return done()
			}
			if time.Now().After(deadline) {
				return cty.NilVal, fmt.Errorf("node %s: started, but nothing listens on %s after %s", n.Name, n.Address, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if pid, err := n.remotePid(ctx); err != nil {
		return cty.NilVal, err
	} else if pid != 0 {
		r.Progress("already running (pid %d)", pid)
		return done()
	}
	// Detached in its own session, output to the log, pid written by the
	// shell that started it.
	line := "mkdir -p " + quote(path.Dir(n.LogFile)) + "; setsid nohup " + commandLine(n.Command) + " >> " + quote(n.LogFile) +
		" 2>&1 < /dev/null & echo $! > " + quote(n.PidFile+".tmp") + " && mv " + quote(n.PidFile+".tmp") + " " + quote(n.PidFile)
	if _, stderr, err := n.host.run(ctx, line, n.host.cfg.timeout); err != nil {
		return cty.NilVal, fmt.Errorf("node %s: starting: %v %s", n.Name, err, strings.TrimSpace(stderr))
	}
	deadline := time.Now().Add(timeout)
	for {
		if c, err := net.DialTimeout("tcp", n.Address, time.Second); err == nil {
			c.Close()
			return done()
		}
		pid, err := n.remotePid(ctx)
		if err != nil {
			return cty.NilVal, err
		}
		if pid == 0 || time.Now().After(deadline) {
			tail, _, _ := n.host.run(ctx, "tail -n 5 "+quote(n.LogFile), n.host.cfg.timeout)
			what := "the process exited at start"
			if pid != 0 {
				what = fmt.Sprintf("the process (pid %d) does not listen on %s after %s", pid, n.Address, timeout)
			}
			return cty.NilVal, fmt.Errorf("node %s: %s: %s", n.Name, what, strings.Join(strings.Split(strings.TrimSpace(tail), "\n"), " | "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *handler) stop(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	timeout, err := r.Duration("timeout", 30*time.Second)
	if err != nil {
		return cty.NilVal, err
	}
	if n.managed() {
		if up, err := n.running(ctx); err != nil {
			return cty.NilVal, err
		} else if up {
			if err := n.runService(ctx, "stopping", n.stopCmd, timeout); err != nil {
				return cty.NilVal, err
			}
			deadline := time.Now().Add(timeout)
			for up {
				if time.Now().After(deadline) {
					return cty.NilVal, fmt.Errorf("node %s: still running after %s (status_command exits 0)", n.Name, timeout)
				}
				time.Sleep(100 * time.Millisecond)
				if up, err = n.running(ctx); err != nil {
					return cty.NilVal, err
				}
			}
		}
		return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)})
	}
	pid, err := n.remotePid(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	if pid != 0 {
		r.Progress("sending SIGTERM to pid %d on %s", pid, n.host.addr)
		_, _, _ = n.host.run(ctx, "kill -TERM "+strconv.Itoa(pid), n.host.cfg.timeout)
		deadline := time.Now().Add(timeout)
		for {
			p, err := n.remotePid(ctx)
			if err != nil {
				return cty.NilVal, err
			}
			if p == 0 {
				break
			}
			if time.Now().After(deadline) {
				r.Progress("pid %d still running after %s: SIGKILL", pid, timeout)
				_, _, _ = n.host.run(ctx, "kill -KILL "+strconv.Itoa(pid), n.host.cfg.timeout)
				time.Sleep(200 * time.Millisecond)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	_, _, _ = n.host.run(ctx, "rm -f "+quote(n.PidFile), n.host.cfg.timeout)
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name)})
}

func (h *handler) exec(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	argv, shell, env, bad, err := localnode.ExecArgs(r.Args)
	if err != nil {
		return cty.NilVal, sdk.ArgError(bad, "%s", err)
	}
	if shell != "" {
		argv = []string{"sh", "-c", shell}
	}
	if len(env) > 0 {
		prefix := []string{"env"}
		for k, v := range env {
			prefix = append(prefix, k+"="+v)
		}
		argv = append(prefix, argv...)
	}
	timeout, err := r.Duration("timeout", 10*time.Minute)
	if err != nil {
		return cty.NilVal, err
	}
	stdout, stderr, err := n.host.run(ctx, commandLine(argv), timeout)
	code := 0
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		tail := strings.Split(strings.TrimSpace(stderr+stdout), "\n")
		if len(tail) > 5 {
			tail = tail[len(tail)-5:]
		}
		return cty.NilVal, fmt.Errorf("node %s: command exited with status %d: %s", n.Name, exit.ExitStatus(), strings.Join(tail, " | "))
	}
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return result(r, map[string]cty.Value{"exit_code": cty.NumberIntVal(int64(code)), "stdout": cty.StringVal(stdout), "stderr": cty.StringVal(stderr)})
}

func (h *handler) setConfig(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	defer fs.Close()
	f, err := fs.Open(n.ConfigFile)
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %s: %w", n.Name, n.ConfigFile, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return cty.NilVal, fmt.Errorf("node %s: %s: %w", n.Name, n.ConfigFile, err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return cty.NilVal, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %s is not a JSON object: %w", n.Name, n.ConfigFile, err)
	}
	key, value := r.String("key"), r.String("value")
	var cur string
	if old, ok := cfg[key]; ok && json.Unmarshal(old, &cur) == nil && cur == value {
		return result(r, map[string]cty.Value{"changed": cty.False})
	}
	cfg[key], _ = json.Marshal(value)
	out, _ := json.MarshalIndent(cfg, "", "  ")
	// The new file takes the old one's mode and owner before it holds
	// anything: a config with the database's credentials stays as private
	// as it was, and readable by the service's user. (Only root may give a
	// file away; another user keeps the file its own.)
	tmp := n.ConfigFile + ".upshift-tmp"
	_ = fs.Remove(tmp) // left by a run that died here
	w, err := fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY)
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: creating %s: %w", n.Name, tmp, err)
	}
	written := false
	defer func() {
		if !written {
			_ = fs.Remove(tmp)
		}
	}()
	fail := func(what string, err error) (cty.Value, error) {
		w.Close()
		return cty.NilVal, fmt.Errorf("node %s: %s %s: %w", n.Name, what, tmp, err)
	}
	if err := w.Chmod(info.Mode().Perm()); err != nil {
		return fail("setting the mode of", err)
	}
	if st, ok := info.Sys().(*sftp.FileStat); ok && n.host.user == "root" {
		if err := w.Chown(int(st.UID), int(st.GID)); err != nil {
			return fail("setting the owner of", err)
		}
	}
	if _, err := w.Write(append(out, '\n')); err != nil {
		return fail("writing", err)
	}
	if err := w.Close(); err != nil {
		return cty.NilVal, fmt.Errorf("node %s: writing %s: %w", n.Name, tmp, err)
	}
	if err := fs.PosixRename(tmp, n.ConfigFile); err != nil {
		return cty.NilVal, fmt.Errorf("node %s: replacing %s: %w", n.Name, n.ConfigFile, err)
	}
	written = true
	return result(r, map[string]cty.Value{"changed": cty.True})
}

func (h *handler) touch(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	rel := r.String("path")
	p := path.Join(n.DataDir, rel)
	if rel == "" || path.IsAbs(rel) || p == n.DataDir || !strings.HasPrefix(p, strings.TrimSuffix(n.DataDir, "/")+"/") {
		return cty.NilVal, sdk.ArgError("path", "node %s: %q must stay inside the data folder %s", n.Name, rel, n.DataDir)
	}
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return cty.NilVal, err
	}
	defer fs.Close()
	f, err := fs.OpenFile(p, os.O_CREATE|os.O_WRONLY)
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %s: %w", n.Name, p, err)
	}
	f.Close()
	return result(r, map[string]cty.Value{"path": cty.StringVal(p)})
}

func (h *handler) readOnly(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	enabled := r.Bool("enabled", true)
	if err := n.SetReadOnly(ctx, enabled); err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name), "enabled": cty.BoolVal(enabled)})
}

func (h *handler) waitHealthy(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n := h.nodes[r.String("node")]
	if n == nil {
		_, _, err := h.node(r)
		return cty.NilVal, err
	}
	timeout, err := r.Duration("timeout", 2*time.Minute)
	if err != nil {
		return cty.NilVal, err
	}
	v, err := n.WaitHealthy(ctx, timeout, max(1, r.Int("successes", 3)), r.Progress)
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return result(r, map[string]cty.Value{"node": cty.StringVal(n.Name), "version": cty.StringVal(v)})
}

func (h *handler) backupData(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	n, unlock, err := h.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	defer unlock()
	to := r.String("to")
	if !path.IsAbs(to) {
		return cty.NilVal, sdk.ArgError("to", "node %s: %q must be an absolute path on the node's host", n.Name, to)
	}
	tmp := quote(to + ".upshift-tmp")
	line := "rm -rf " + tmp + " && cp -a " + quote(n.DataDir) + " " + tmp + " && rm -rf " + quote(to) + " && mv " + tmp + " " + quote(to) + " && du -sb " + quote(to)
	out, stderr, err := n.host.run(ctx, line, 10*time.Minute)
	if err != nil {
		return cty.NilVal, fmt.Errorf("node %s: copying %s: %v %s", n.Name, n.DataDir, err, strings.TrimSpace(stderr))
	}
	f := strings.Fields(out)
	size := int64(0)
	if len(f) > 0 {
		size, _ = strconv.ParseInt(f[0], 10, 64)
	}
	return result(r, map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(size)})
}
