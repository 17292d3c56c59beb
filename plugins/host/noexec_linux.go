//go:build linux

package host

import "golang.org/x/sys/unix"

// mountedNoexec reports whether the file system holding d forbids
// executing files.
func mountedNoexec(d string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(d, &fs) == nil && fs.Flags&unix.ST_NOEXEC != 0
}
