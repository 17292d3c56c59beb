package nodekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Health is one answer of a node's health URL. The fields are platformd's
// (cmd/platformd/README.md); a platform that reports fewer leaves them
// zero: Pid 0 and Instance "" when it does not say which process answers,
// ReadOnly nil when it does not report read-only mode.
type Health struct {
	Code     int    // HTTP status
	Status   string // "ok", "starting", "stopping", or ""
	Name     string
	Version  string
	ReadOnly *bool
	Pid      int
	Instance string
	Body     string // the body, trimmed, for messages
}

// Starting reports whether the node says it is still in its start-up
// checks.
func (h Health) Starting() bool { return h.Status == "starting" }

// Who is what an answer says of the process that gave it, for messages:
// `node-1 version 1 pid 42`, or the status and body when it says nothing.
func (h Health) Who() string {
	var parts []string
	if h.Name != "" {
		parts = append(parts, h.Name)
	}
	if h.Version != "" {
		parts = append(parts, "version "+h.Version)
	}
	if h.Pid != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", h.Pid))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("HTTP %d %s", h.Code, LastLines(h.Body, 1))
	}
	return strings.Join(parts, " ")
}

// Health asks the node's health URL once. An error means no HTTP answer.
func (n *Node) Health(ctx context.Context) (Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HealthURL, nil)
	if err != nil {
		return Health{}, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return Health{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	h := Health{Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	var body struct {
		Status   string          `json:"status"`
		Name     string          `json:"name"`
		Version  json.RawMessage `json:"version"`
		ReadOnly *bool           `json:"read_only"`
		Pid      int             `json:"pid"`
		Instance string          `json:"instance"`
	}
	if json.Unmarshal(b, &body) == nil {
		h.Status, h.Name, h.ReadOnly, h.Pid, h.Instance = body.Status, body.Name, body.ReadOnly, body.Pid, body.Instance
		h.Version = strings.Trim(string(body.Version), `"`)
	}
	return h, nil
}

// readOnly asks the read-only endpoint, for a platform whose health answer
// does not say.
func (n *Node) readOnly(ctx context.Context) (bool, error) {
	resp, err := n.adminRequest(ctx, http.MethodGet, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var got struct {
		ReadOnly *bool `json:"read_only"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&got); err != nil || got.ReadOnly == nil {
		return false, fmt.Errorf("%s answers %s without read_only%s", n.adminEndpoint(), resp.Status, n.adminRefused(resp))
	}
	return *got.ReadOnly, nil
}

// Want is what wait_healthy requires beyond a healthy answer.
type Want struct {
	Version  string // the version the node must report; "" any
	Writable bool   // the node must not be read-only
	// HealthyFor is how long the answers must stay good, from the first of
	// the streak, before the node counts: a node that passes three checks
	// and then falls over in its warm-up is not done.
	HealthyFor time.Duration
}

// WaitHealthy polls the health URL until it answers 200 `successes` times
// in a row; it returns the version the node reports.
func (n *Node) WaitHealthy(ctx context.Context, timeout time.Duration, successes int, progress Progress) (string, error) {
	return n.WaitHealthyFor(ctx, timeout, successes, Want{}, progress)
}

// WaitHealthyFor is WaitHealthy where each success must also have want's
// version and writability.
func (n *Node) WaitHealthyFor(ctx context.Context, timeout time.Duration, successes int, want Want, progress Progress) (string, error) {
	deadline := time.Now().Add(timeout)
	streak, version, last := 0, "", "no answer yet"
	var since time.Time // the first good answer of the streak
	saidStaying := false
	for {
		h, err := n.Health(ctx)
		switch {
		case err != nil:
			streak, last = 0, err.Error()
		case h.Code != http.StatusOK:
			streak, last = 0, fmt.Sprintf("HTTP %d: %s", h.Code, h.Body)
		case want.Version != "" && h.Version != want.Version:
			streak, last = 0, fmt.Sprintf("healthy but on version %q, not %q", h.Version, want.Version)
		default:
			ro, rerr := false, error(nil)
			if want.Writable {
				if h.ReadOnly != nil {
					ro = *h.ReadOnly
				} else {
					ro, rerr = n.readOnly(ctx)
				}
			}
			switch {
			case rerr != nil:
				streak, last = 0, "healthy, but cannot tell whether it is writable: "+rerr.Error()
			case ro:
				streak, last = 0, "healthy but read-only"
			default:
				if streak == 0 {
					since = time.Now()
				}
				streak++
				version = h.Version
			}
		}
		if streak >= successes && time.Since(since) >= want.HealthyFor {
			return version, nil
		}
		if streak >= successes && !saidStaying {
			progress("healthy; it must stay so for %s", want.HealthyFor)
			saidStaying = true
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not healthy after %s (last answer: %s)", timeout, last)
		}
		if streak == 0 {
			progress("waiting: %s", last)
			saidStaying = false
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Started is what a driver knows of the process a start launched, for
// WaitStarted. Any field may be zero when the driver cannot know it (a
// service manager started the process).
type Started struct {
	// Pid of the process started; compared with the pid the node reports.
	Pid int
	// Exited reports whether the process has ended, and why (its exit
	// status and the tail of its log).
	Exited func() (bool, string)
	// Owns reports whether the process started holds the socket listening
	// on the node's address (known false when that cannot be told), and
	// names whoever does.
	Owns func() (owns, known bool, holder string)
	// IsOurs reports whether the pid the node reports is the process
	// started (or a process it started: a wrapper that forks); known false
	// when that cannot be told. Nil compares the pid with Pid.
	IsOurs func(pid int) (ours, known bool)
}

// answersAsOurs reports whether an answer naming pid comes from the
// process started; true when it cannot be told.
func (s Started) answersAsOurs(pid int) bool {
	if pid == 0 || s.Pid == 0 {
		return true
	}
	if s.IsOurs != nil {
		ours, known := s.IsOurs(pid)
		return ours || !known
	}
	return pid == s.Pid
}

// nameWhoAnswers adds to the exit of the process started what answers on
// the node's address instead, if anything does: a stray process holding
// the port is the usual reason for an exit at start.
func (n *Node) nameWhoAnswers(ctx context.Context, exit error) error {
	if h, err := n.Health(ctx); err == nil {
		return fmt.Errorf("%w; %s answers as %s", exit, n.Address, h.Who())
	}
	return exit
}

// exitedWithin is the error of a process started that has exited, or
// exits within d; nil while it runs (or when that cannot be told).
func (s Started) exitedWithin(d time.Duration) error {
	if s.Exited == nil {
		return nil
	}
	deadline := time.Now().Add(d)
	for {
		if ended, why := s.Exited(); ended {
			return fmt.Errorf("the process exited at start: %s", why)
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ErrNotOurs marks a start that found another process answering on the
// node's address.
var ErrNotOurs = errors.New("another process answers on the node's address")

// WaitStarted waits until the process a start launched answers on the
// node's address as itself: the answer must come from the process started
// (the pid the node reports, or the listening socket it holds), and the
// node must be past its start-up checks (health status "starting"). A
// process that exits meanwhile is an error quoting why; another process
// answering is an ErrNotOurs error naming it.
func (n *Node) WaitStarted(ctx context.Context, timeout time.Duration, s Started, progress Progress) error {
	deadline := time.Now().Add(timeout)
	last, saidStarting := "no answer yet", false
	// An answer that cannot be tied to the process started (its socket
	// not seen, no pid in the answer) is trusted only once it has stayed
	// so for a moment: a process that cannot bind the port is exiting just
	// then, and its /proc entry vanishing looks the same as "cannot tell".
	var unprovenSince time.Time
	self := "the process started"
	if s.Pid != 0 {
		self = fmt.Sprintf("the process started (pid %d)", s.Pid)
	}
	for {
		if err := s.exitedWithin(0); err != nil {
			return n.nameWhoAnswers(ctx, err)
		}
		h, herr := n.Health(ctx)
		answers := herr == nil
		if !answers {
			if c, err := net.DialTimeout("tcp", n.Address, time.Second); err == nil {
				c.Close()
				answers = true
			}
		}
		if answers {
			var notOurs error
			proven := false
			if s.Owns != nil {
				owns, known, holder := s.Owns()
				if known && !owns {
					notOurs = fmt.Errorf("%w: %s is held by %s, not by %s", ErrNotOurs, n.Address, holder, self)
				}
				proven = known && owns
			}
			if herr == nil && h.Pid != 0 && s.Pid != 0 && s.answersAsOurs(h.Pid) {
				proven = true
			}
			if notOurs == nil && herr == nil && !s.answersAsOurs(h.Pid) {
				notOurs = fmt.Errorf("%w: %s answers as %s, not as %s", ErrNotOurs, n.Address, h.Who(), self)
			}
			if notOurs != nil {
				// The process started may be on its way out (its socket
				// closed, not yet reaped): its exit, which says why, wins.
				if err := s.exitedWithin(500 * time.Millisecond); err != nil {
					return n.nameWhoAnswers(ctx, err)
				}
				return notOurs
			}
			switch {
			case herr != nil:
				last = "listens, but its health URL fails: " + herr.Error()
			case h.Starting():
				last = "running its start-up checks"
				if !saidStarting {
					progress("%s answers and runs its start-up checks", self)
					saidStarting = true
				}
			case !proven && (s.Owns != nil || s.Pid != 0) && (unprovenSince.IsZero() || time.Since(unprovenSince) < time.Second):
				if unprovenSince.IsZero() {
					unprovenSince = time.Now()
				}
				last = "answers, but not yet known to be " + self
			default:
				return nil
			}
		} else {
			last = "nothing listens on " + n.Address
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not up on %s after %s (%s)", self, n.Address, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
