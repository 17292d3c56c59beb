package dbkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
)

// Locker is a database's cluster lock, held by the plugin process: taken
// on a session (a connection, an open file) that the process keeps open,
// so it is released by Unlock or when the process ends, a crash included.
// Methods may be called concurrently.
type Locker interface {
	// TryLock takes lock name for this process without waiting, recording
	// holder where another run can read it. It returns nil when this
	// process holds the lock: newly, or already (idempotent; a lock whose
	// session was lost is taken again if it is free). It returns the
	// holder when another session holds it.
	TryLock(ctx context.Context, name, holder string) (*Holder, error)
	// Unlock releases lock name if this process holds it, and says
	// whether it did. A lock held by another is left alone.
	Unlock(ctx context.Context, name string) (released bool, err error)
}

// Holder is who holds a lock, as far as the database can tell.
type Holder struct {
	// Place is where the lock lives, as messages name it
	// (`database "a" on 10.0.0.5:5432`, `/srv/app.db.upshift-lock`).
	Place string
	// Holder is the holder argument the holding run gave; "" when it
	// cannot be read.
	Holder string
	// Since is when the lock (or the session holding it) was taken; zero
	// when unknown.
	Since time.Time
	// Session is the database's view of the holding session
	// (`PostgreSQL backend pid 4242 of role "upshift" from 10.0.0.7`).
	Session string
	// Free says what an operator does when the holding run is dead and the
	// lock is nevertheless not free (its session survived it).
	Free string
}

// HeldError is lock's refusal: the lock is held by another run.
type HeldError struct {
	Name   string
	Held   Holder
	Waited time.Duration
}

func (e *HeldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lock %q on %s is held by ", e.Name, e.Held.Place)
	if e.Held.Holder != "" {
		b.WriteString(e.Held.Holder)
	} else {
		b.WriteString("a run whose holder could not be read")
	}
	var about []string
	if e.Held.Session != "" {
		about = append(about, e.Held.Session)
	}
	if !e.Held.Since.IsZero() {
		about = append(about, "since "+e.Held.Since.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if len(about) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(about, ", "))
	}
	if e.Waited > 0 {
		fmt.Fprintf(&b, ", still after waiting %s", e.Waited)
	}
	b.WriteString(": another upshift run is working on this cluster; let it finish first. If that run is dead, its plugin's connection is gone and the lock is free: run again")
	if e.Held.Free != "" {
		fmt.Fprintf(&b, ". If it is not free, %s", e.Held.Free)
	}
	return b.String()
}

// IsHeld reports whether err is lock's refusal (through wrapping).
func IsHeld(err error) bool {
	var h *HeldError
	return errors.As(err, &h)
}

// DefaultLock is the lock name when lock and unlock are given none.
const DefaultLock = "upshift"

// pollEvery is how often lock tries again while it waits.
var pollEvery = 250 * time.Millisecond

func lockName(r *sdk.Request) (string, error) {
	n := r.String("name")
	if n == "" {
		return DefaultLock, nil
	}
	if !identRE.MatchString(n) || len(n) > 40 {
		return "", sdk.ArgError("name", "%q is not a lock name (letters, digits, _; at most 40)", n)
	}
	return n, nil
}

// Holder text is one line an operator reads: no control characters.
func holderArg(r *sdk.Request) (string, error) {
	h := strings.TrimSpace(r.String("holder"))
	switch {
	case h == "":
		return "", sdk.ArgError("holder", "is empty: say which run takes the lock (run id, user@host, start time)")
	case len(h) > 256:
		return "", sdk.ArgError("holder", "is %d bytes; at most 256", len(h))
	case strings.IndexFunc(h, unicode.IsControl) >= 0:
		return "", sdk.ArgError("holder", "must be one line without control characters")
	}
	return h, nil
}

// lock is the standard action: TryLock until it is ours or wait is over.
func lock(ctx context.Context, r *sdk.Request, l Locker) (cty.Value, error) {
	name, err := lockName(r)
	if err != nil {
		return cty.NilVal, err
	}
	holder, err := holderArg(r)
	if err != nil {
		return cty.NilVal, err
	}
	wait, err := r.Duration("wait", 0)
	if err != nil {
		return cty.NilVal, err
	}
	began := time.Now()
	said := false
	for {
		held, err := l.TryLock(ctx, name, holder)
		if err != nil {
			return cty.NilVal, fmt.Errorf("lock %q: %w", name, err)
		}
		if held == nil {
			return Result(r, map[string]cty.Value{"name": cty.StringVal(name), "holder": cty.StringVal(holder)})
		}
		left := wait - time.Since(began)
		if left <= 0 {
			e := &HeldError{Name: name, Held: *held}
			if wait > 0 {
				e.Waited = wait
			}
			return cty.NilVal, e
		}
		if !said {
			who := held.Holder
			if who == "" {
				who = held.Session
			}
			r.Progress("lock %q is held by %s; waiting up to %s", name, who, wait)
			said = true
		}
		t := time.NewTimer(min(pollEvery, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return cty.NilVal, fmt.Errorf("lock %q: %w while waiting for it", name, ctx.Err())
		case <-t.C:
		}
	}
}

func unlock(ctx context.Context, r *sdk.Request, l Locker) (cty.Value, error) {
	name, err := lockName(r)
	if err != nil {
		return cty.NilVal, err
	}
	released, err := l.Unlock(ctx, name)
	if err != nil {
		return cty.NilVal, fmt.Errorf("unlock %q: %w", name, err)
	}
	return Result(r, map[string]cty.Value{"name": cty.StringVal(name), "released": cty.BoolVal(released)})
}
