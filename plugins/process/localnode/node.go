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
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Node is one local node, as the playbook's nodes list describes it.
type Node struct {
	nodekit.Node
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
// plugin), output appended to its log file, pid written atomically, and
// waits until it listens. An early exit is an error quoting its log.
func (n *Node) Start(ctx context.Context, timeout time.Duration, progress func(string, ...any)) (bool, error) {
	if pid := n.pid(); pid != 0 {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(n.LogFile), 0o755); err != nil {
		return false, err
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(n.Command[0], n.Command[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("starting %s: %w", n.Command[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it, whenever it ends
	if err := fsutil.WriteFile(n.PidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return false, err
	}
	progress("started pid %d, waiting for %s to listen", cmd.Process.Pid, n.Address)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			_ = os.Remove(n.PidFile)
			return false, fmt.Errorf("the process exited at start (%v): %s", err, logTail(n.LogFile, logStart))
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", n.Address, time.Second); err == nil {
			c.Close()
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("the process (pid %d) does not listen on %s after %s: %s", cmd.Process.Pid, n.Address, timeout, logTail(n.LogFile, logStart))
		}
	}
}

// Stop sends SIGTERM, waits up to timeout for a graceful exit, then kills.
func (n *Node) Stop(ctx context.Context, timeout time.Duration, progress func(string, ...any)) (bool, error) {
	pid := n.pid()
	if pid == 0 {
		_ = os.Remove(n.PidFile)
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("SIGTERM to pid %d: %w", pid, err)
	}
	progress("sent SIGTERM to pid %d", pid)
	deadline := time.Now().Add(timeout)
	for procfs.Alive(pid) {
		if time.Now().After(deadline) {
			progress("pid %d still running after %s: SIGKILL", pid, timeout)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100 && procfs.Alive(pid); i++ {
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
	if procfs.Alive(pid) {
		return false, fmt.Errorf("pid %d survived SIGKILL", pid)
	}
	_ = os.Remove(n.PidFile)
	return true, nil
}

// ExecResult is what a command printed and how it ended.
type ExecResult = nodekit.ExecResult

const outputLimit = 64 << 10

// Exec runs argv (or, when shell is set, sh -c shell) in the node's data
// folder's parent, with extra environment variables.
func (n *Node) Exec(ctx context.Context, argv []string, shell string, env map[string]string, timeout time.Duration) (ExecResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	if shell != "" {
		cmd = exec.CommandContext(ctx, "/bin/sh", "-c", shell)
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("command timed out after %s", timeout)
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		return res, fmt.Errorf("command exited with status %d: %s", res.ExitCode, nodekit.LastLines(res.Stderr+res.Stdout, 5))
	case err != nil:
		return res, fmt.Errorf("running %s: %w", cmd.Args[0], err)
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
// caller has checked that p is inside the data folder (nodekit).
func (n *Node) Touch(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// BackupData copies the data folder to dest (replacing an earlier copy),
// through a temporary folder so a half copy never has the final name.
func (n *Node) BackupData(dest string) (int64, error) {
	tmp := dest + ".upshift-tmp"
	_ = os.RemoveAll(tmp)
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
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			nb, err := copyFile(p, target, info.Mode().Perm())
			total += nb
			return err
		}
		return nil // sockets, devices, links: not data
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return 0, err
	}
	if err := os.RemoveAll(dest); err != nil {
		return 0, err
	}
	return total, os.Rename(tmp, dest)
}

func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
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
