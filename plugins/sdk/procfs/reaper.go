package procfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// reaperScript is the reaper: a small sh that keeps the ids of the process
// groups RunGroup has running ("+ ID" adds one, "- ID" removes it, a line
// each on its stdin) and, when its stdin ends, SIGKILLs every group still
// listed. Its stdin is a pipe only this process holds the write end of
// (close-on-exec: no command inherits it), so it ends when this process
// does, however it ends: a return from main, a panic, SIGKILL. The list is
// kept without forking (parameter expansion), and the sh is in its own
// process group, so a Ctrl-C aimed at the operator's terminal does not
// reach it.
const reaperScript = `g=' '
while read -r op id; do
  case $op in
  +) g="$g$id " ;;
  -) case $g in *" $id "*) g="${g%%" $id "*} ${g#*" $id "}" ;; esac ;;
  esac
done
for id in $g; do kill -KILL -"$id" 2>/dev/null; done`

// reaper is this process's handle on its reaper sh. It mirrors the list
// the sh keeps, so a reaper that died (someone killed it) is replaced by
// one that knows every group still running.
type reaper struct {
	mu   sync.Mutex
	w    *os.File // the sh's stdin; nil when none runs
	cmd  *exec.Cmd
	live map[int]bool
}

// ready starts the reaper unless it runs: a step is not started without
// one.
func (r *reaper) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.startLocked()
}

func (r *reaper) startLocked() error {
	if r.w != nil {
		return nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting the process-group reaper: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", reaperScript)
	cmd.Stdin = pr
	cmd.Env = ChildEnv(nil)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return fmt.Errorf("starting the process-group reaper: %w", err)
	}
	r.w, r.cmd = pw, cmd
	go r.watch(cmd, pw)
	// A new reaper learns the groups its predecessor was keeping.
	for id := range r.live {
		if err := r.writeLocked('+', id); err != nil {
			return err
		}
	}
	return nil
}

// watch reaps the reaper sh when it ends (it should not while this process
// lives) and forgets it, so the next step starts another.
func (r *reaper) watch(cmd *exec.Cmd, w *os.File) {
	_ = cmd.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == w {
		r.w.Close()
		r.w, r.cmd = nil, nil
		if len(r.live) > 0 {
			// Groups are running unguarded: guard them again now rather
			// than at the next step.
			_ = r.startLocked()
		}
	}
}

func (r *reaper) writeLocked(op byte, id int) error {
	line := append([]byte{op, ' '}, strconv.Itoa(id)...)
	_, err := r.w.Write(append(line, '\n'))
	return err
}

// add registers a running group; it fails only when no reaper can run.
func (r *reaper) add(pgid int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[pgid] = true
	if r.w == nil {
		// A new reaper is told of every live group, this one included:
		// telling it twice would leave the id on its list after remove.
		if err := r.startLocked(); err != nil {
			delete(r.live, pgid)
			return err
		}
		return nil
	}
	if err := r.writeLocked('+', pgid); err != nil {
		// The sh died between its start and now: its replacement is told
		// of every live group, this one included.
		r.w.Close()
		r.w, r.cmd = nil, nil
		if err := r.startLocked(); err != nil {
			delete(r.live, pgid)
			return errors.Join(errors.New("the process-group reaper died"), err)
		}
	}
	return nil
}

// remove forgets a group RunGroup has killed and whose leader it is about
// to reap (after which the id may be reused).
func (r *reaper) remove(pgid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, pgid)
	if r.w != nil {
		_ = r.writeLocked('-', pgid)
	}
}
