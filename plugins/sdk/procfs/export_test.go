package procfs

// ReaperPid is the pid of this process's reaper sh, 0 when none runs.
func ReaperPid() int {
	theReaper.mu.Lock()
	defer theReaper.mu.Unlock()
	if theReaper.cmd == nil {
		return 0
	}
	return theReaper.cmd.Process.Pid
}

// ReaperScript is the reaper sh's program.
const ReaperScript = reaperScript

// LiveGroups is how many groups the reaper is keeping.
func LiveGroups() int {
	theReaper.mu.Lock()
	defer theReaper.mu.Unlock()
	return len(theReaper.live)
}
