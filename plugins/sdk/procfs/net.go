package procfs

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ListensOn reports whether process pid holds a TCP socket listening on
// port (any address, IPv4 or IPv6). known is false when /proc cannot say:
// nothing listens on the port yet, or pid's descriptors cannot be read (a
// process of another user, without root). A start that must know whether
// what answers on a node's port is the process it started asks this.
func ListensOn(pid, port int) (listens, known bool) {
	inodes := listeningInodes(port)
	if len(inodes) == 0 {
		return false, false
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, false
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true, true
		}
	}
	// The socket may have closed between the two reads (the process
	// exiting): a "no" stands only if the same sockets still listen.
	again := listeningInodes(port)
	if len(again) != len(inodes) {
		return false, false
	}
	for ino := range inodes {
		if !again[ino] {
			return false, false
		}
	}
	return false, true
}

// ListenerPids lists the live processes holding a socket listening on
// port, as far as this user may see their descriptors: the stray process
// an error names when a node's port is taken.
func ListenerPids(port int) []int {
	inodes := listeningInodes(port)
	if len(inodes) == 0 {
		return nil
	}
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir("/proc/" + e.Name() + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, _ := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name())
			if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// Describe is "pid N (command line)" for an error message, or "pid N".
func Describe(pid int) string {
	if p, ok := Read(pid); ok && p.Title() != "" {
		return fmt.Sprintf("pid %d (%s)", pid, p.Title())
	}
	return fmt.Sprintf("pid %d", pid)
}

// listeningInodes is the socket inodes of /proc/net/tcp and tcp6 in state
// LISTEN (0A) on port.
func listeningInodes(port int) map[string]bool {
	want := fmt.Sprintf(":%04X", port)
	out := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" || !strings.HasSuffix(fl[1], want) {
				continue
			}
			out[fl[9]] = true
		}
		file.Close()
	}
	return out
}
