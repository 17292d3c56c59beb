package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
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
	{Name: "backup_root", Type: cty.String, Description: "Folder on the hosts every backup_data `to` must be inside. Unset: any folder but /, the data folder and what holds it, and an existing one is replaced only when it is a backup upshift made."},
	{Name: "max_sessions", Type: cty.Number, Description: "Most SSH sessions open at once on one connection (one per host and user, shared by the nodes there): commands, and the one SFTP session its file operations share, which holds a slot for as long as it is open (with 1, each file operation opens its own session in that slot). A slot is free again once sshd has collected the closed session. Default 8, under sshd's MaxSessions of 10."},
}}

// settings is configSchema decoded.
type settings struct {
	KnownHosts     string        `cty:"known_hosts"`
	TOFU           bool          `cty:"trust_on_first_use"`
	User           string        `cty:"user" default:"root"`
	PrivateKeyFile string        `cty:"private_key_file"`
	Passphrase     string        `cty:"passphrase"`
	Timeout        time.Duration `cty:"timeout,positive" default:"15s"`
	ReadOnlyPath   string        `cty:"read_only_path" default:"/admin/read-only"`
	BackupRoot     string        `cty:"backup_root"`
	MaxSessions    int           `cty:"max_sessions" default:"8"`
}

func newPlugin() *sdk.Plugin {
	kit := nodekit.New[*node]("ssh", driver{})
	return &sdk.Plugin{
		Name: "ssh", Version: Version, Kind: schema.KindNodePool, Config: configSchema,
		Node:      nodeSchema,
		Configure: func(_ context.Context, req plugins.ConfigureRequest) error { return configure(kit, req) },
		Actions:   kit.Actions(),
	}
}

// nodeSchema is what configure reads from a node object: nodekit's, plus
// where the node's host is and, optionally, its service commands.
var nodeSchema = nodekit.NodeSchema(
	&schema.Attribute{Name: "host", Type: cty.String, Required: true, Description: "host:port of the node's sshd."},
	&schema.Attribute{Name: "user", Type: cty.String, Description: "SSH user on this host; default the plugin's user."},
	&schema.Attribute{Name: "start_command", Type: cty.List(cty.String), Description: "Starts the node's service (systemd, an init script); needs stop_command and status_command too."},
	&schema.Attribute{Name: "stop_command", Type: cty.List(cty.String), Description: "Stops the node's service."},
	&schema.Attribute{Name: "status_command", Type: cty.List(cty.String), Description: "Exits 0 while the node's service runs."},
)

// node is a node on a remote host: the process contract plus host and user.
type node struct {
	nodekit.Node // names, paths, command, URLs (paths are on the remote host)
	host         *host
	// Service commands, when the node's service is run by systemd or an
	// init script: start_command, stop_command and status_command (exit 0
	// while running). Without them the plugin runs `command` detached with
	// a pid file, as the process plugin does.
	startCmd, stopCmd, statusCmd []string
	// backupRoot: see fsutil.CheckBackupTarget ("" when none is declared).
	backupRoot string
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
		return fmt.Errorf("%s (%s): %v %s", what, strings.Join(argv, " "), err, strings.TrimSpace(stderr))
	}
	return nil
}

func configure(kit *nodekit.Kit[*node], req plugins.ConfigureRequest) error {
	var c settings
	if err := sdk.Decode(req.Config, &c); err != nil {
		return err
	}
	cfg := &sshConfig{knownHosts: c.KnownHosts, tofu: c.TOFU, timeout: c.Timeout}
	auth, err := authMethods(c.PrivateKeyFile, c.Passphrase)
	if err != nil {
		return sdk.ArgError("private_key_file", "%s", err)
	}
	cfg.auth = auth
	if req.Nodes.IsNull() {
		return errors.New("an ssh node pool needs a list of nodes")
	}
	if c.MaxSessions < 1 {
		return sdk.ArgError("max_sessions", "must be 1 or more, not %d", c.MaxSessions)
	}
	var nodes []*node
	hosts := map[string]*host{}
	for it := req.Nodes.ElementIterator(); it.Next(); {
		_, v := it.Element()
		kn, err := nodekit.FromValue(v, c.ReadOnlyPath, "host")
		if err != nil {
			return err
		}
		n := &node{Node: *kn, backupRoot: c.BackupRoot, startCmd: nodekit.Strings(v, "start_command"), stopCmd: nodekit.Strings(v, "stop_command"), statusCmd: nodekit.Strings(v, "status_command")}
		if n.managed() && (len(n.stopCmd) == 0 || len(n.statusCmd) == 0) {
			return fmt.Errorf("node %q has a start_command but not both stop_command and status_command", n.Name)
		}
		user := nodekit.Attr(v, "user")
		if user == "" {
			user = c.User
		}
		// One connection per host and user, whatever the number of nodes
		// on it: a thousand nodes on one host are one SSH handshake.
		key := user + "@" + nodekit.Attr(v, "host")
		if hosts[key] == nil {
			hosts[key] = newHost(user, nodekit.Attr(v, "host"), cfg, c.MaxSessions)
		}
		n.host = hosts[key]
		nodes = append(nodes, n)
	}
	return kit.SetNodes(nodes, 0, 0)
}

// driver runs the standard actions on remote hosts over SSH.
type driver struct{}

var _ nodekit.Driver[*node] = driver{}

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

func (driver) Start(ctx context.Context, n *node, timeout time.Duration, progress nodekit.Progress) error {
	if n.managed() {
		if up, err := n.running(ctx); err != nil {
			return err
		} else if up {
			progress("already running")
			return nil
		}
		if err := n.runService(ctx, "starting", n.startCmd, timeout); err != nil {
			return err
		}
		// The service manager knows the pid, not us: the node must answer
		// past its start-up checks.
		return n.WaitStarted(ctx, timeout, nodekit.Started{}, progress)
	}
	if pid, err := n.remotePid(ctx); err != nil {
		return err
	} else if pid != 0 {
		progress("already running (pid %d)", pid)
		return nil
	}
	// Detached in its own session, output to the log, pid written by the
	// shell that started it. No link on the way to the log or pid file
	// (the node's process may plant one in its data folder) is followed:
	// each is looked at first, and the pid's temporary file is made new
	// (noclobber) in a private mode.
	paths := append(n.components(n.LogFile), n.components(n.PidFile)...)
	pidTmp := n.PidFile + ".tmp"
	line := noLinks(append(paths, pidTmp)...) + "mkdir -p " + quote(path.Dir(n.LogFile)) + "; " + noLinks(n.components(n.LogFile)...) +
		"setsid nohup " + commandLine(n.Command) + " >> " + quote(n.LogFile) +
		" 2>&1 < /dev/null & rm -f " + quote(pidTmp) + " && (umask 077; set -C; echo $! > " + quote(pidTmp) + ") && mv " + quote(pidTmp) + " " + quote(n.PidFile)
	if _, stderr, err := n.host.run(ctx, line, n.host.cfg.timeout); err != nil {
		return fmt.Errorf("starting: %v %s", err, strings.TrimSpace(stderr))
	}
	pid, err := n.remotePid(ctx)
	if err != nil {
		return err
	}
	tail := func() string {
		out, _, _ := n.host.run(ctx, "tail -n 5 "+quote(n.LogFile), n.host.cfg.timeout)
		return nodekit.LastLines(out, 5)
	}
	if pid != 0 {
		progress("started pid %d on %s, waiting for it to answer on %s", pid, n.host.addr, n.Address)
	}
	// The node must answer as the pid started (platformd's /healthz says
	// which pid answers), past its start-up checks.
	err = n.WaitStarted(ctx, timeout, nodekit.Started{
		Pid: pid,
		Exited: func() (bool, string) {
			if pid != 0 {
				if p, err := n.remotePid(ctx); err != nil || p == pid {
					return false, ""
				}
			}
			return true, tail()
		},
	}, progress)
	if err != nil {
		// What was started must not stay behind: the next start would
		// take it for the running node.
		if p, _ := n.remotePid(ctx); pid != 0 && p == pid {
			_, _, _ = n.host.run(ctx, "kill -TERM "+strconv.Itoa(pid)+"; rm -f "+quote(n.PidFile), n.host.cfg.timeout)
			err = fmt.Errorf("%w; stopped pid %d", err, pid)
		}
	}
	return err
}

func (driver) Stop(ctx context.Context, n *node, timeout time.Duration, progress nodekit.Progress) error {
	if n.managed() {
		up, err := n.running(ctx)
		if err != nil || !up {
			return err
		}
		if err := n.runService(ctx, "stopping", n.stopCmd, timeout); err != nil {
			return err
		}
		deadline := time.Now().Add(timeout)
		for up {
			if time.Now().After(deadline) {
				return fmt.Errorf("still running after %s (status_command exits 0)", timeout)
			}
			time.Sleep(100 * time.Millisecond)
			if up, err = n.running(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	pid, err := n.remotePid(ctx)
	if err != nil {
		return err
	}
	if pid != 0 {
		progress("sending SIGTERM to pid %d on %s", pid, n.host.addr)
		_, _, _ = n.host.run(ctx, "kill -TERM "+strconv.Itoa(pid), n.host.cfg.timeout)
		deadline := time.Now().Add(timeout)
		for {
			p, err := n.remotePid(ctx)
			if err != nil {
				return err
			}
			if p == 0 {
				break
			}
			if time.Now().After(deadline) {
				progress("pid %d still running after %s: SIGKILL", pid, timeout)
				_, _, _ = n.host.run(ctx, "kill -KILL "+strconv.Itoa(pid), n.host.cfg.timeout)
				time.Sleep(200 * time.Millisecond)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	_, _, _ = n.host.run(ctx, "rm -f "+quote(n.PidFile), n.host.cfg.timeout)
	return nil
}

func (driver) Exec(ctx context.Context, n *node, cmd nodekit.Command, timeout time.Duration) (nodekit.ExecResult, error) {
	argv := cmd.Argv
	if cmd.Shell != "" {
		argv = []string{"sh", "-c", cmd.Shell}
	}
	// The environment goes over the session's stdin, not the command line.
	stdout, stderr, err := n.host.runStep(ctx, argv, cmd.Env, timeout)
	res := nodekit.ExecResult{Stdout: stdout, Stderr: stderr}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitStatus()
		return res, fmt.Errorf("command exited with status %d: %s", exit.ExitStatus(), procfs.HideValues(nodekit.LastLines(stderr+stdout, 5), cmd.Env))
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

func (driver) SetConfig(ctx context.Context, n *node, key, value string) (bool, error) {
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return false, err
	}
	defer fs.Close()
	f, err := fs.Open(n.ConfigFile)
	if err != nil {
		return false, fmt.Errorf("%s: %w", n.ConfigFile, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return false, fmt.Errorf("%s: %w", n.ConfigFile, err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return false, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return false, fmt.Errorf("%s is not a JSON object: %w", n.ConfigFile, err)
	}
	var cur string
	if old, ok := cfg[key]; ok && json.Unmarshal(old, &cur) == nil && cur == value {
		return false, nil
	}
	cfg[key], _ = json.Marshal(value)
	out, _ := json.MarshalIndent(cfg, "", "  ")
	return true, replaceRemote(fs.Client, n.ConfigFile, info, append(out, '\n'), n.host.user == "root")
}

// replaceRemote replaces file over SFTP through a temporary file renamed
// over it. The new file takes the old one's mode and owner before it holds
// anything: a config with the database's credentials stays as private as it
// was, and readable by the service's user. (Only root may give a file away;
// another user keeps the file its own.) It is fsutil.WriteFile's rule, on
// the node's host.
//
// The temporary file is made in a private folder (0700) beside file: an
// SFTP create gets the server's umask (often 0644), and whoever opened the
// file in that moment would read it once the secret is in. No one can look
// a name up in the folder once it is 0700, and it is 0700 before the file
// is made.
func replaceRemote(fs *sftp.Client, file string, info os.FileInfo, data []byte, asRoot bool) error {
	dir, err := privateDir(fs, path.Dir(file))
	if err != nil {
		return err
	}
	defer func() { _ = fs.RemoveDirectory(dir) }()
	tmp := path.Join(dir, path.Base(file))
	w, err := fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	written := false
	defer func() {
		if !written {
			_ = fs.Remove(tmp)
		}
	}()
	fail := func(what string, err error) error {
		w.Close()
		return fmt.Errorf("%s %s: %w", what, tmp, err)
	}
	if err := w.Chmod(info.Mode().Perm()); err != nil {
		return fail("setting the mode of", err)
	}
	if st, ok := info.Sys().(*sftp.FileStat); ok && asRoot {
		if err := w.Chown(int(st.UID), int(st.GID)); err != nil {
			return fail("setting the owner of", err)
		}
	}
	if _, err := w.Write(data); err != nil {
		return fail("writing", err)
	}
	// On disk before the rename, as fsutil.WriteFile does locally: a crash
	// after it must find the old config or the new, never an empty file.
	// (fsync@openssh.com; a server without it is not refused.)
	var status *sftp.StatusError
	if err := w.Sync(); err != nil && !(errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxOpUnsupported) {
		return fail("syncing", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := fs.PosixRename(tmp, file); err != nil {
		return fmt.Errorf("replacing %s: %w", file, err)
	}
	written = true
	return nil
}

func (driver) Touch(ctx context.Context, n *node, p string) error {
	fs, err := n.host.sftp(ctx)
	if err != nil {
		return err
	}
	defer fs.Close()
	return touchRemote(fs.Client, n.DataDir, p)
}

// BackupData copies the data folder to `to` on the node's host, replacing
// an earlier backup. It runs as the SSH user, often root, and removes what
// `to` names: never /, the data folder or what holds it, anything outside
// the declared backup_root, or a folder that is not a backup upshift made
// (fsutil.BackupMarker in it). The copy is private (go= on everything).
func (driver) BackupData(ctx context.Context, n *node, to string) (int64, error) {
	if err := fsutil.CheckBackupTarget(to, n.backupRoot, n.DataDir); err != nil {
		return 0, err
	}
	to = path.Clean(to)
	tmp := quote(to + ".upshift-tmp")
	refuse := ""
	for _, p := range []string{to, to + ".upshift-tmp"} {
		q, m := quote(p), quote(path.Join(p, fsutil.BackupMarker))
		refuse += "if [ -e " + q + " ] || [ -L " + q + " ]; then if [ -L " + q + " ] || [ ! -d " + q + " ] || [ -L " + m + " ] || [ ! -f " + m + " ]; then echo " +
			quote("upshift: "+p+" exists and is not a backup upshift made (no "+fsutil.BackupMarker+" in it): it is left alone; choose another `to`, or move it aside") + " >&2; exit 3; fi; fi; "
	}
	line := refuse + "rm -rf " + tmp + " && (umask 077 && mkdir -p " + quote(path.Dir(to)) + ") && cp -a " + quote(n.DataDir) + " " + tmp +
		" && printf '%s\\n' " + quote(n.DataDir) + " > " + quote(path.Join(to+".upshift-tmp", fsutil.BackupMarker)) +
		" && chmod -R go= " + tmp + " && rm -rf " + quote(to) + " && mv " + tmp + " " + quote(to) + " && du -sb " + quote(to)
	out, stderr, err := n.host.run(ctx, line, 10*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("copying %s: %v %s", n.DataDir, err, strings.TrimSpace(stderr))
	}
	f := strings.Fields(out)
	size := int64(0)
	if len(f) > 0 {
		size, _ = strconv.ParseInt(f[0], 10, 64)
	}
	return size, nil
}
