// Package localnode owns what is particular to a node that is a local
// process: starting it detached in its own session with a pid file and a log
// file (so the process plugin and the demo lab can each stop what the other
// started), stopping it, running commands, editing its config file and
// copying its data folder on this machine. What every node_pool shares (the
// node's description, its HTTP endpoints, the action scaffolding) is in
// plugins/sdk/nodekit.
package localnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Node is one local node, as the playbook's nodes list describes it.
type Node struct {
	nodekit.Node
	// BackupRoot is the folder backups must be inside ("" for none
	// declared): see fsutil.CheckBackupTarget.
	BackupRoot string
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool { return n.pid() != 0 }

// Pid returns the pid of the node's running process, or 0.
func (n *Node) Pid() int { return n.pid() }

// pid returns the pid of the node's running process, or 0. A pid file whose
// process is gone, a zombie, or another program is not running.
func (n *Node) pid() int {
	pid := procfs.ReadPidFile(n.PidFile)
	p, ok := procfs.Read(pid)
	if !ok || !p.Live() || len(p.Args) == 0 || filepath.Base(p.Args[0]) != filepath.Base(n.Command[0]) {
		return 0 // gone, a zombie, or the pid was reused by another program
	}
	return pid
}

// Start starts the node detached (its own session, so it outlives this
// plugin: the one process the plugin starts that must), output appended to
// its log file, pid written atomically, and waits until it answers on its
// address as itself (nodekit.WaitStarted): past its start-up checks, from
// the pid started, holding the listening socket. An early exit is an error
// quoting its log; another process on the port is an error naming it; the
// process started is stopped on any failure.
func (n *Node) Start(ctx context.Context, timeout time.Duration, progress func(string, ...any)) (bool, error) {
	if pid := n.pid(); pid != 0 {
		return false, nil
	}
	// The log and pid files may be in the data folder, which the node's
	// own process can write: a link planted there is not followed out.
	if _, inData := fsutil.Inside(n.DataDir, n.LogFile); !inData {
		if err := os.MkdirAll(filepath.Dir(n.LogFile), 0o755); err != nil {
			return false, err
		}
	}
	logf, err := fsutil.OpenNoFollow(n.LogFile, []string{n.DataDir}, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(n.Command[0], n.Command[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = procfs.ChildEnv(nil) // not the plugin's: no UPSHIFT_VAR_* secret
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("starting %s: %w", n.Command[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it, whenever it ends
	if err := fsutil.WriteFileIn(n.DataDir, n.PidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return false, err
	}
	pid := cmd.Process.Pid
	progress("started pid %d, waiting for it to answer on %s", pid, n.Address)
	var (
		gone    bool
		exitErr error
	)
	started := nodekit.Started{
		Pid: pid,
		Exited: func() (bool, string) {
			if !gone {
				select {
				case exitErr = <-exited:
					gone = true
				default:
					return false, ""
				}
			}
			status := "exit status 0"
			if exitErr != nil {
				status = exitErr.Error()
			}
			why := status + ": " + logTail(n.LogFile, logStart)
			if holders := listeners(n.Address); holders != "" {
				why += "; " + n.Address + " is held by " + holders
			}
			return true, why
		},
		Owns: func() (bool, bool, string) {
			port := portOf(n.Address)
			if port == 0 {
				return false, false, ""
			}
			owns, known := procfs.ListensOn(pid, port)
			if !known || owns {
				return owns, known, ""
			}
			// A command that forks (a wrapper script) listens through a
			// child of the pid started.
			for _, l := range procfs.ListenerPids(port) {
				if procfs.DescendsFrom(l, pid) {
					return true, true, ""
				}
			}
			holders := listeners(n.Address)
			if holders == "" {
				holders = "a process this user cannot see"
			}
			return false, true, holders
		},
		IsOurs: func(p int) (bool, bool) {
			if p == pid {
				return true, true
			}
			if !procfs.Alive(p) {
				return false, false // not in this pid namespace: a container's
			}
			return procfs.DescendsFrom(p, pid), true
		},
	}
	err = n.WaitStarted(ctx, timeout, started, progress)
	if err == nil {
		return true, nil
	}
	// Not up: what was started must not stay behind, or the next start
	// would take it for a running node.
	if !gone {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if errors.Is(err, nodekit.ErrNotOurs) {
			err = fmt.Errorf("%w; stopped pid %d: %s", err, pid, logTail(n.LogFile, logStart))
		} else {
			err = fmt.Errorf("%w; stopped it: %s", err, logTail(n.LogFile, logStart))
		}
	}
	_ = os.Remove(n.PidFile)
	return false, err
}

// listeners names the processes listening on addr's port, "" when none
// can be seen.
func listeners(addr string) string {
	port := portOf(addr)
	if port == 0 {
		return ""
	}
	var out []string
	for _, p := range procfs.ListenerPids(port) {
		out = append(out, procfs.Describe(p))
	}
	return strings.Join(out, ", ")
}

// portOf is the port of a host:port address, 0 when there is none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	port, _ := strconv.Atoi(p)
	return port
}

// Stop sends SIGTERM, waits up to timeout for a graceful exit, then kills.
func (n *Node) Stop(ctx context.Context, timeout time.Duration, progress func(string, ...any)) (bool, error) {
	pid := n.pid()
	if pid == 0 {
		_ = os.Remove(n.PidFile)
		return false, nil
	}
	// The node was started in a session, and so a process group, of its
	// own: the whole group is signalled, so that a wrapper script's server
	// stops with it rather than outliving the wrapper.
	group := false
	if pg, err := syscall.Getpgid(pid); err == nil && pg == pid {
		group = true
	}
	procs := append([]int{pid}, descendants(pid)...)
	signal := func(sig syscall.Signal) error {
		if group {
			return syscall.Kill(-pid, sig)
		}
		return syscall.Kill(pid, sig)
	}
	if err := signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("SIGTERM to pid %d: %w", pid, err)
	}
	progress("sent SIGTERM to pid %d", pid)
	deadline := time.Now().Add(timeout)
	for procfs.AnyAlive(procs) {
		if time.Now().After(deadline) {
			progress("pid %d still running after %s: SIGKILL", pid, timeout)
			_ = signal(syscall.SIGKILL)
			for _, p := range procs {
				_ = syscall.Kill(p, syscall.SIGKILL) // one that left the group
			}
			for i := 0; i < 100 && procfs.AnyAlive(procs); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if procfs.AnyAlive(procs) {
		return false, fmt.Errorf("pid %d (or a process it started) survived SIGKILL", pid)
	}
	_ = os.Remove(n.PidFile)
	return true, nil
}

// descendants lists the live processes pid started, and theirs.
func descendants(pid int) []int {
	var out []int
	for _, c := range procfs.Children(pid) {
		out = append(out, c.Pid)
		out = append(out, descendants(c.Pid)...)
	}
	return out
}

// ExecResult is what a command printed and how it ended.
type ExecResult = nodekit.ExecResult

const outputLimit = 64 << 10

// Exec runs argv (or, when shell is set, sh -c shell) with extra
// environment variables, in a process group of its own that is killed when
// the command exits, when ctx ends or the timeout passes, and when this
// plugin dies (procfs.RunGroup): nothing it starts outlives the step.
func (n *Node) Exec(ctx context.Context, argv []string, shell string, env map[string]string, timeout time.Duration) (ExecResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	if shell != "" {
		cmd = exec.Command("/bin/sh", "-c", shell)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Env = procfs.ChildEnv(env)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	name := cmd.Path
	code, err := procfs.RunGroup(ctx, cmd)
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("command timed out after %s; its process group was killed", timeout)
	case err != nil && ctx.Err() != nil:
		return res, fmt.Errorf("command cancelled (%v); its process group was killed", ctx.Err())
	case err != nil:
		return res, fmt.Errorf("running %s: %w", name, err)
	case code != 0:
		res.ExitCode = code
		return res, fmt.Errorf("command exited with status %d: %s", code, nodekit.LastLines(res.Stderr+res.Stdout, 5))
	}
	return res, nil
}

// SetConfig sets one key of the node's JSON config file, keeping every
// other key as it was; it reports whether the file changed.
func (n *Node) SetConfig(key, value string) (bool, error) {
	b, err := os.ReadFile(n.ConfigFile)
	if err != nil {
		return false, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return false, fmt.Errorf("config file %s is not a JSON object: %w", n.ConfigFile, err)
	}
	enc, _ := json.Marshal(value)
	if old, ok := cfg[key]; ok {
		var s string
		if json.Unmarshal(old, &s) == nil && s == value {
			return false, nil
		}
	}
	cfg[key] = enc
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return false, err
	}
	// The file keeps its mode and owner: a config holding the database's
	// password stays as private as it was.
	return true, fsutil.WriteFile(n.ConfigFile, append(out, '\n'), 0o600)
}

// Touch creates the empty file p (and its folder) unless it exists; the
// caller has checked that p is inside the data folder (nodekit). It is
// opened through an os.Root on the data folder: a link in the way (the
// node's process can plant one) does not lead the plugin, often root, out.
func (n *Node) Touch(p string) error {
	f, err := fsutil.OpenIn(n.DataDir, p, os.O_CREATE|os.O_WRONLY, 0o644, 0o755)
	if err != nil {
		return err
	}
	return f.Close()
}

// BackupData copies the data folder to dest (replacing an earlier copy),
// through a temporary folder so a half copy never has the final name.
// What it replaces must be a backup it made (fsutil.BackupMarker in it),
// inside the backup root when one is declared, and never /, the data
// folder or what holds it. The copy is private: folders 0700, files 0600.
func (n *Node) BackupData(dest string) (int64, error) {
	if err := fsutil.CheckBackupTarget(dest, n.BackupRoot, n.DataDir); err != nil {
		return 0, err
	}
	dest = filepath.Clean(dest)
	if err := replaceable(dest); err != nil {
		return 0, err
	}
	tmp := dest + ".upshift-tmp"
	if err := replaceable(tmp); err != nil {
		return 0, err
	}
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return 0, err
	}
	var total int64
	err := filepath.WalkDir(n.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.DataDir, p)
		target := filepath.Join(tmp, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o700)
		case info.Mode().IsRegular():
			nb, err := copyFile(p, target, 0o600)
			total += nb
			return err
		}
		return nil // sockets, devices, links: not data
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, fsutil.BackupMarker), []byte(n.DataDir+"\n"), 0o600)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.RemoveAll(dest); err != nil {
		return 0, err
	}
	return total, os.Rename(tmp, dest)
}

// replaceable refuses to replace p unless it is missing, or a folder holding
// the marker of a backup upshift made.
func replaceable(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		if m, err := os.Lstat(filepath.Join(p, fsutil.BackupMarker)); err == nil && m.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("%s exists and is not a backup upshift made (no %s in it): it is left alone; choose another `to`, or move it aside", p, fsutil.BackupMarker)
}

func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return 0, err
	}
	nb, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return nb, err
}

// logTail returns the last lines the process wrote to its log since offset.
func logTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	_, _ = f.Seek(offset, io.SeekStart)
	b, _ := io.ReadAll(io.LimitReader(f, outputLimit))
	if len(bytes.TrimSpace(b)) == 0 {
		return "(nothing in " + path + ")"
	}
	return nodekit.LastLines(string(b), 5)
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := outputLimit - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
