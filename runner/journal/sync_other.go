//go:build !linux

package journal

import "os"

// datasync flushes f; outside Linux that is a full fsync (F_FULLFSYNC on
// macOS).
func datasync(f *os.File) error { return f.Sync() }
