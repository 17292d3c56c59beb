// Package procfs owns reading what Linux says of a process in /proc: its
// state (an exited process its parent has not reaped yet is a zombie, and
// no longer runs), its parent, its command line, and its children; and
// reading a pid file. The plugins that start and stop long-lived processes
// (the process plugin's nodes, the test and lab HAProxy, nginx and database
// servers) all need to tell a live process from a zombie or from a reused
// pid, and share this rather than each parse /proc. It also owns which
// process listens on a TCP port (ListensOn, ListenerPids), so a start can
// tell the process it started from a stray one on the node's port, and
// running a step's command in a process group that dies with the step and
// with the plugin (RunGroup).
package procfs

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Proc is one process as /proc/PID/stat and /proc/PID/cmdline describe it.
type Proc struct {
	Pid, PPid int
	// State is the stat state letter: R, S, D, Z (zombie), X (dead), ...
	State byte
	// Args is the command line; a process may rewrite it (nginx's
	// "nginx: worker process"), and a zombie's is empty.
	Args []string
	// CPU is the user and system time it has used (stat's utime and
	// stime, in clock ticks of 1/100 s, USER_HZ on Linux).
	CPU time.Duration
}

// Read returns what /proc says of pid, false when there is no such process.
func Read(pid int) (Proc, bool) {
	if pid <= 0 {
		return Proc{}, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, false
	}
	// The command name is in parentheses and may hold spaces or ')': the
	// fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Proc{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || f[0] == "" {
		return Proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	p := Proc{Pid: pid, PPid: ppid, State: f[0][0]}
	if len(f) > 12 {
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		p.CPU = time.Duration(utime+stime) * 10 * time.Millisecond
	}
	if c, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && len(c) > 0 {
		p.Args = strings.Split(string(bytes.TrimRight(c, "\x00")), "\x00")
	}
	return p, true
}

// Live reports whether the process runs: neither a zombie nor dead.
func (p Proc) Live() bool { return p.State != 'Z' && p.State != 'X' }

// Title is the command line joined by spaces, as ps shows it.
func (p Proc) Title() string { return strings.TrimSpace(strings.Join(p.Args, " ")) }

// Alive reports whether pid is a live process (not a zombie).
func Alive(pid int) bool {
	p, ok := Read(pid)
	return ok && p.Live()
}

// AnyAlive reports whether any of pids is alive.
func AnyAlive(pids []int) bool {
	for _, pid := range pids {
		if Alive(pid) {
			return true
		}
	}
	return false
}

// Children lists the live processes whose parent is pid, by pid.
func Children(pid int) []Proc {
	var out []Proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := Read(c); ok && p.PPid == pid && p.Live() {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// Pids is the pids of ps.
func Pids(ps []Proc) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Pid
	}
	return out
}

// ReadPidFile returns the pid on the first line of path, or 0 when the file
// is missing or holds no positive number. It says nothing of whether that
// process still runs.
func ReadPidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return ParsePid(b)
}

// ParsePid is the pid on the first line of a pid file's contents b, or 0
// when it holds no positive number.
func ParsePid(b []byte) int {
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// WaitGone waits up to timeout for every one of pids to end and returns
// those still alive then: a test's (or a stop's) check that nothing of a
// process tree remains.
func WaitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for AnyAlive(pids) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var left []int
	for _, pid := range pids {
		if Alive(pid) {
			left = append(left, pid)
		}
	}
	return left
}

// DescendsFrom reports whether process pid is ancestor itself or one of
// its descendants (pid's chain of parents reaches ancestor): a node whose
// command is a wrapper that forks listens through a child of the pid
// started.
func DescendsFrom(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == ancestor {
			return true
		}
		p, ok := Read(pid)
		if !ok {
			return false
		}
		pid = p.PPid
	}
	return pid == ancestor
}
