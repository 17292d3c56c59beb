package postgresd

// SetFreePort replaces how Start picks a free port, until the returned
// function restores it: a test hands out a taken port to see Start try
// another.
func SetFreePort(f func() (int, error)) (restore func()) {
	old := freePort
	freePort = f
	return func() { freePort = old }
}
