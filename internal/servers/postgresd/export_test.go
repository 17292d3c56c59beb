package postgresd

// SetFreePort replaces how Start picks a free port, until the returned
// function restores it: a test hands out a taken port to see Start try
// another.
func SetFreePort(f func() (int, error)) (restore func()) {
	old := freePort
	freePort = f
	return func() { freePort = old }
}

// Sweep is what Start does first: remove the leftovers of exited starters.
func Sweep() { sweep() }

// Release lets go of the lock on the directory Start made, as the exit of
// the process that made it would.
func (s *Server) Release() { s.tmp.Release() }

// RunPrefix names the folders of relocated clusters in os.TempDir.
const RunPrefix = runPrefix
