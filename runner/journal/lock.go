package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// Lock file names inside the state directory. The lock file itself is never
// removed: deleting a flock'ed file lets two processes lock two different
// inodes of the same name.
const (
	lockName  = "lock"
	ownerName = "lock.owner"
)

// Owner describes the process holding a Lock, written beside the lock file
// so that a refused run can say who holds it.
type Owner struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	User    string    `json:"user"`
	Since   time.Time `json:"since"`
	Command string    `json:"command"`
}

// CurrentOwner describes this process running command (e.g. "upshift run
// playbooks/rolling-upgrade").
func CurrentOwner(command string) Owner {
	return fillOwner(Owner{Command: command})
}

func fillOwner(o Owner) Owner {
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.User == "" {
		if u, err := user.Current(); err == nil {
			o.User = u.Username
		} else {
			o.User = os.Getenv("USER")
		}
	}
	if o.Since.IsZero() {
		o.Since = time.Now()
	}
	if o.Command == "" {
		o.Command = strings.Join(RedactArgs(os.Args), " ")
	}
	return o
}

// RedactArgs returns args with the value of every -var (or --var) hidden:
// `-var db_password=s3cret` is recorded, and shown to a refused run, as
// `-var db_password=(hidden)`. Which variables are sensitive is not known
// here, so none is shown. Variables files are named, not read.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "var" {
			continue
		}
		if hasVal { // -var=name=value
			out[i] = a[:len(a)-len(val)] + hideValue(val)
			continue
		}
		if i+1 < len(out) { // -var name=value
			out[i+1] = hideValue(out[i+1])
			i++
		}
	}
	return out
}

func hideValue(assign string) string {
	name, _, ok := strings.Cut(assign, "=")
	if !ok {
		return "(hidden)"
	}
	return name + "=(hidden)"
}

// String renders o as "pid 1234 (user@host, since 12:01:03, `upshift run ...`)".
func (o Owner) String() string {
	// The time alone reads best; a lock held since another day needs the date.
	since := o.Since.Format("15:04:05")
	y, m, d := o.Since.Date()
	if ny, nm, nd := time.Now().In(o.Since.Location()).Date(); y != ny || m != nm || d != nd {
		since = o.Since.Format("2006-01-02 15:04:05")
	}
	return fmt.Sprintf("pid %d (%s@%s, since %s, `%s`)", o.PID, o.User, o.Host, since, o.Command)
}

// HeldError is returned by Acquire when another process holds the lock.
type HeldError struct {
	Dir   string
	Owner *Owner // nil when the holder has not written (or damaged) its owner file
	Err   error  // why Owner is nil
}

func (e *HeldError) Error() string {
	if e.Owner == nil {
		return fmt.Sprintf("another upshift run holds the lock on %s (holder unknown: %v)", e.Dir, e.Err)
	}
	return fmt.Sprintf("another upshift run holds the lock on %s: %s", e.Dir, e.Owner)
}

// Lock keeps other upshift processes off a state directory. It is an
// exclusive flock on dir/lock, released by the kernel when the process dies.
type Lock struct {
	dir   string
	fl    *flock.Flock
	owner Owner
	stale *Owner
}

// Acquire takes the lock on dir without waiting. If another process holds
// it, the error is a *HeldError naming the holder. If the previous holder
// died without releasing (its owner file is still there), the lock is taken
// over and TakenOver reports the dead holder. Blank Owner fields are filled
// in for this process.
func Acquire(dir string, owner Owner) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: lock: %w", err)
	}
	owner = fillOwner(owner)
	fl := flock.New(filepath.Join(dir, lockName), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("journal: lock %s: %w", fl.Path(), err)
	}
	ownerPath := filepath.Join(dir, ownerName)
	if !ok {
		return nil, heldError(dir, ownerPath)
	}

	l := &Lock{dir: dir, fl: fl, owner: owner}
	// We hold the flock, so an owner file left here belongs to a holder that
	// died without Release.
	if prev, err := readOwner(ownerPath); err == nil {
		l.stale = &prev
	} else if !errors.Is(err, fs.ErrNotExist) {
		l.stale = &Owner{} // damaged file: a holder died mid-write
	}
	b, _ := json.Marshal(owner)
	if err := writeFileAtomic(ownerPath, append(b, '\n'), true); err != nil {
		_ = fl.Unlock()
		return nil, err
	}
	return l, nil
}

// heldError reads the holder's owner file. A holder that has just taken the
// flock may not have written it yet, so a missing file is retried briefly.
func heldError(dir, ownerPath string) error {
	var err error
	for i := 0; i < 10; i++ {
		var o Owner
		if o, err = readOwner(ownerPath); err == nil {
			return &HeldError{Dir: dir, Owner: &o}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &HeldError{Dir: dir, Err: err}
}

func readOwner(path string) (Owner, error) {
	var o Owner
	b, err := os.ReadFile(path)
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("owner file %s: %w", path, err)
	}
	return o, nil
}

// Owner returns the owner recorded for this lock.
func (l *Lock) Owner() Owner { return l.owner }

// TakenOver reports the holder that died while holding the lock, if this
// Acquire took a stale lock over. Its fields are zero when the dead holder's
// owner file was unreadable. The caller should log it: the journal of that
// run is probably unfinished.
func (l *Lock) TakenOver() (Owner, bool) {
	if l.stale == nil {
		return Owner{}, false
	}
	return *l.stale, true
}

// Release removes the owner file and unlocks. The owner file goes first, so
// that nobody who takes the lock next mistakes us for a dead holder.
// Releasing twice is a no-op.
func (l *Lock) Release() error {
	if l == nil || l.fl == nil {
		return nil
	}
	err := os.Remove(filepath.Join(l.dir, ownerName))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if uerr := l.fl.Unlock(); uerr != nil && err == nil {
		err = uerr
	}
	l.fl = nil
	if err != nil {
		return fmt.Errorf("journal: release lock on %s: %w", l.dir, err)
	}
	return nil
}
