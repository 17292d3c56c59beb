package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// The cluster lock is an exclusive flock(2) on a file beside database A,
// <A>.upshift-lock (<A>.<name>.upshift-lock for another lock name), kept
// open by the plugin: the kernel releases it when the file is closed, so
// when the plugin process dies. The file holds the holder and when it took
// the lock; it stays after unlock (removing a file others may be locking
// would let two runs lock two different files), emptied.

const lockSuffix = ".upshift-lock"

// lockPath is beside A's real path, so two runs reaching A through
// different symbolic links lock the same file.
func (d *db) lockPath(name string) string {
	a := d.path
	if real, err := filepath.EvalSymlinks(a); err == nil {
		a = real
	}
	if name == dbkit.DefaultLock {
		return a + lockSuffix
	}
	return a + "." + name + lockSuffix
}

func (d *db) TryLock(_ context.Context, name, holder string) (*dbkit.Holder, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	if d.locks == nil {
		d.locks = map[string]*os.File{}
	}
	path := d.lockPath(name)
	if f := d.locks[name]; f != nil {
		// Still ours while the file we hold is the one at path.
		a, errA := f.Stat()
		b, errB := os.Stat(path)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return nil, nil
		}
		_ = f.Close()
		delete(d.locks, name)
	}
	if _, err := os.Stat(d.path); err != nil {
		return nil, fmt.Errorf("database %s: %w", d.path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		defer f.Close()
		return holderOf(path), nil
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	host, _ := os.Hostname()
	since := time.Now().UTC().Format(time.RFC3339)
	if err := writeAll(f, fmt.Sprintf("%s\nsince %s\npid %d\nhost %s\n", holder, since, os.Getpid(), host)); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("writing the holder to %s: %w", path, err)
	}
	d.locks[name] = f
	return nil, nil
}

func writeAll(f *os.File, s string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(s), 0); err != nil {
		return err
	}
	return f.Sync()
}

// holderOf reads the lock file at path, held by another.
func holderOf(path string) *dbkit.Holder {
	h := &dbkit.Holder{Place: path}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	h.Holder = lines[0]
	pid, host := "", ""
	for _, l := range lines[1:] {
		if v, ok := strings.CutPrefix(l, "since "); ok {
			h.Since, _ = time.Parse(time.RFC3339, v)
		}
		if v, ok := strings.CutPrefix(l, "pid "); ok {
			pid = v
		}
		if v, ok := strings.CutPrefix(l, "host "); ok {
			host = v
		}
	}
	if pid != "" {
		h.Session = fmt.Sprintf("flock held by plugin process %s on %s", pid, host)
	}
	h.Free = fmt.Sprintf("a process still has %s open: find it with `fuser -v %s` (on the machine that holds it, if the folder is shared) and end it once you are sure its run is gone", filepath.Base(path), path)
	return h
}

func (d *db) Unlock(_ context.Context, name string) (bool, error) {
	d.lockMu.Lock()
	defer d.lockMu.Unlock()
	f := d.locks[name]
	if f == nil {
		return false, nil
	}
	delete(d.locks, name)
	_ = f.Truncate(0)
	// Closing the file releases the flock.
	_ = f.Close()
	return true, nil
}
