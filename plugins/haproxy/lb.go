package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// LB is the vendor logic of the haproxy load_balancer plugin, in plain Go:
// one backend of one HAProxy, driven through its admin socket. lbkit binds
// it to the SDK (plugin.go only decodes the config).
type LB struct {
	client    *runtimeapi.Client
	backend   string
	stateFile string
	// poll is how often drain and enable look at `show stat`.
	poll time.Duration
	// progressEvery spaces progress lines while nothing changes.
	progressEvery time.Duration
	// sessionIdle: with cookie persistence on, a draining server's
	// persistent sessions have ended once it took no new session for this
	// long.
	sessionIdle time.Duration
}

// NewLB returns the logic for backend behind the admin socket at socket.
// stateFile, when not empty, is rewritten with `show servers state` after
// every change, so a reload that loads it keeps drain and maint.
func NewLB(socket, backend, stateFile string, cmdTimeout time.Duration) *LB {
	return &LB{
		client:        runtimeapi.NewClient(socket, cmdTimeout),
		backend:       backend,
		stateFile:     stateFile,
		poll:          100 * time.Millisecond,
		progressEvery: time.Second,
		sessionIdle:   DefaultSessionIdle,
	}
}

// DefaultSessionIdle is the plugin's session_idle when not set.
const DefaultSessionIdle = 5 * time.Second

// Affinity reports HAProxy's cookie persistence: `show stat` gives the
// backend's cookie name on its BACKEND row and each server's cookie value
// on its own; persistence holds for a server only when it has a value.
func (l *LB) Affinity(ctx context.Context) (lbkit.Affinity, error) {
	rows, total, err := l.client.Backend(ctx, l.backend)
	if err != nil {
		return lbkit.Affinity{}, err
	}
	if total == nil {
		return lbkit.Affinity{}, l.noBackend(ctx)
	}
	enable := fmt.Sprintf("in backend %s, add `cookie SRV insert indirect nocache` and `cookie <name>` to each server line (with `option redispatch`), then reload HAProxy", l.backend)
	name := total["cookie"]
	if name == "" {
		return lbkit.Affinity{How: fmt.Sprintf("backend %s has no cookie persistence: each request is balanced (%s)", l.backend, orDash(total["algo"])), Enable: enable}, nil
	}
	var without []string
	for _, r := range rows {
		if r["cookie"] == "" {
			without = append(without, r["svname"])
		}
	}
	if len(without) > 0 {
		return lbkit.Affinity{How: fmt.Sprintf("backend %s sets cookie %s but server(s) %s have no cookie value", l.backend, name, list(without)), Enable: enable}, nil
	}
	return lbkit.Affinity{On: true, How: fmt.Sprintf("cookie %s names each client's server (backend %s)", name, l.backend)}, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ServerStatus is one server as the plugin reports it.
type ServerStatus struct {
	Name     string
	State    string // ready | drain | maint (administrative, from show servers state)
	Health   string // up | down | unknown (from show stat status)
	Sessions int    // current sessions (scur)
	Queued   int    // requests waiting for this server (qcur)
	Total    int    // sessions it ever took (stot): drain sees new ones by it
	Status   string // HAProxy's own status text: "UP", "UP 1/2", "DOWN", "MAINT", "DRAIN", ...
	Check    string // last check status, e.g. L7OK, L4CON
}

// inService reports whether the server takes new traffic: ready and fully
// UP (a server going down, "UP 1/2", is not counted).
func (s ServerStatus) inService() bool { return s.State == lbkit.StateReady && s.Status == "UP" }

func (s ServerStatus) describe() string {
	d := s.Status
	if s.Check != "" && !strings.HasPrefix(s.Status, "MAINT") {
		d += ", check " + s.Check
	}
	return d
}

// healthOf maps HAProxy's status text to up/down/unknown. A server in
// maintenance is not checked, so its health is unknown; a drained server is
// still checked and a drained one that fails shows DOWN.
func healthOf(status string) string {
	switch {
	case strings.HasPrefix(status, "MAINT"):
		return lbkit.HealthUnknown
	case strings.HasPrefix(status, "UP"), strings.HasPrefix(status, "DRAIN"), strings.HasPrefix(status, "NOLB"):
		return lbkit.HealthUp
	case strings.HasPrefix(status, "DOWN"):
		return lbkit.HealthDown
	default: // "no check" and anything newer
		return lbkit.HealthUnknown
	}
}

var _ lbkit.Backend = (*LB)(nil)

// Servers is Status as the contract's status action reports it.
func (l *LB) Servers(ctx context.Context) ([]lbkit.Server, error) {
	all, err := l.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]lbkit.Server, len(all))
	for i, s := range all {
		out[i] = lbkit.Server{Name: s.Name, State: s.State, Health: s.Health, Sessions: s.Sessions}
	}
	return out, nil
}

// Metrics reads the backend's counters from `show stat`: responses by
// class (hrsp_*), connection and response errors (econ, eresp), retries
// (wretr), redispatches (wredis) and current sessions (scur), for the
// backend as a whole (its BACKEND row counts what no server took: a 503
// when none is up) and for each server.
func (l *LB) Metrics(ctx context.Context) (lbkit.Metrics, error) {
	rows, total, err := l.client.Backend(ctx, l.backend)
	if err != nil {
		return lbkit.Metrics{}, err
	}
	if total == nil {
		return lbkit.Metrics{}, l.noBackend(ctx)
	}
	m := lbkit.Metrics{Backend: total.Counters()}
	for _, r := range rows {
		m.Servers = append(m.Servers, lbkit.ServerCounters{Name: r["svname"], Counters: r.Counters()})
	}
	return m, nil
}

// Status returns every server of the backend, in config order.
func (l *LB) Status(ctx context.Context) ([]ServerStatus, error) {
	rows, found, err := l.client.Servers(ctx, l.backend)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, l.noBackend(ctx)
	}
	states, err := l.client.ServersState(ctx, l.backend)
	if err != nil {
		return nil, err
	}
	admin := map[string]runtimeapi.ServerState{}
	for _, s := range states {
		admin[s.Name] = s
	}
	out := make([]ServerStatus, 0, len(rows))
	for _, r := range rows {
		st := ServerStatus{
			Name:     r["svname"],
			Status:   r["status"],
			Check:    r["check_status"],
			Sessions: r.Int("scur"),
			Queued:   r.Int("qcur"),
			Total:    r.Int("stot"),
			Health:   healthOf(r["status"]),
			State:    lbkit.StateReady,
		}
		if a, ok := admin[st.Name]; ok {
			switch {
			case a.InMaint():
				st.State = lbkit.StateMaint
			case a.InDrain():
				st.State = lbkit.StateDrain
			}
		} else if strings.HasPrefix(st.Status, "MAINT") {
			st.State = lbkit.StateMaint
		}
		out = append(out, st)
	}
	return out, nil
}

func (l *LB) noBackend(ctx context.Context) error {
	names, err := l.client.Backends(ctx)
	if err != nil {
		return err
	}
	sort.Strings(names)
	return fmt.Errorf("HAProxy at %s has no backend %q (backends: %s)", l.client.Socket, l.backend, list(names))
}

// server returns the named server's status and all servers; an unknown name
// is an argument error that lists the servers that exist.
func (l *LB) server(ctx context.Context, name string) (ServerStatus, []ServerStatus, error) {
	all, err := l.Status(ctx)
	if err != nil {
		return ServerStatus{}, nil, err
	}
	names := make([]string, len(all))
	for i, s := range all {
		if s.Name == name {
			return s, all, nil
		}
		names[i] = s.Name
	}
	return ServerStatus{}, nil, sdk.ArgError("server", "backend %q has no server %q; its servers are %s", l.backend, name, list(names))
}

func list(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// Drain takes a server out of rotation without cutting a request: DRAIN (no
// new requests), wait until its current sessions reach zero, then MAINT. It
// refuses when fewer than MinInService other servers are up and ready. A
// server already in maintenance is left alone; one already draining (a
// resumed run) is waited for without the guard, since it already takes no
// new traffic.
func (l *LB) Drain(ctx context.Context, a lbkit.DrainArgs, progress lbkit.Progress) (lbkit.ServerResult, error) {
	if a.Timeout <= 0 {
		a.Timeout = 60 * time.Second
	}
	if a.MinInService < 0 {
		return lbkit.ServerResult{}, sdk.ArgError("min_in_service", "must be 0 or more, not %d", a.MinInService)
	}
	srv, all, err := l.server(ctx, a.Server)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	res := lbkit.ServerResult{Server: srv.Name, State: lbkit.StateMaint}
	switch srv.State {
	case lbkit.StateMaint:
		progress.Printf("%s is already in maintenance", srv.Name)
		return res, nil
	case lbkit.StateReady:
		if err := l.guard(srv.Name, all, a.MinInService); err != nil {
			return lbkit.ServerResult{}, err
		}
		if err := l.set(ctx, srv.Name, runtimeapi.StateDrain); err != nil {
			return lbkit.ServerResult{}, err
		}
		progress.Printf("%s: drain set (was %s, %d sessions)", srv.Name, srv.describe(), srv.Sessions)
	default:
		progress.Printf("%s is already draining (%d sessions)", srv.Name, srv.Sessions)
	}

	// With cookie persistence, DRAIN still sends a server the clients
	// whose cookie names it: their sessions end when they stop coming,
	// or are redispatched at the timeout by MAINT (HAProxy then answers
	// them from another server, with a new cookie), not failed.
	aff, err := l.Affinity(ctx)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	if aff.On {
		progress.Printf("%s: session affinity is on (%s): its persistent sessions stay until they end (no new session for %s) or the timeout (%s), then they are redispatched", srv.Name, aff.How, l.sessionIdle, a.Timeout)
	}
	start := time.Now()
	ended, n, err := l.waitSessions(ctx, srv.Name, start, start.Add(a.Timeout), a.Timeout, aff.On, progress)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	if !ended && !aff.On {
		return lbkit.ServerResult{}, fmt.Errorf("server %s still has %d sessions after %s (left in drain: it takes no new requests)", srv.Name, n, a.Timeout)
	}
	if err := l.set(ctx, srv.Name, runtimeapi.StateMaint); err != nil {
		return lbkit.ServerResult{}, err
	}
	if ended {
		progress.Printf("%s: no sessions left after %s; now in maintenance", srv.Name, time.Since(start).Round(10*time.Millisecond))
		return res, nil
	}
	// MAINT takes no new request but lets those in flight finish: wait
	// for them as long again before the node may stop.
	progress.Printf("%s: drain timeout %s reached with persistent sessions still coming: in maintenance now, they are redispatched to other servers", srv.Name, a.Timeout)
	redispatched := time.Now()
	if ended, n, err = l.waitSessions(ctx, srv.Name, redispatched, redispatched.Add(a.Timeout), a.Timeout, false, progress); err != nil {
		return lbkit.ServerResult{}, err
	}
	if !ended {
		return lbkit.ServerResult{}, fmt.Errorf("server %s still has %d in-flight sessions %s after its persistent sessions were redispatched (left in maintenance)", srv.Name, n, a.Timeout)
	}
	progress.Printf("%s: no sessions left %s after the redispatch; in maintenance", srv.Name, time.Since(redispatched).Round(10*time.Millisecond))
	return res, nil
}

// waitSessions waits, until deadline, for server's current and queued
// sessions to reach 0 and, when idle is set, for it to take no new
// session for l.sessionIdle as well. It reports whether they ended and how
// many were left.
func (l *LB) waitSessions(ctx context.Context, server string, start, deadline time.Time, timeout time.Duration, idle bool, progress lbkit.Progress) (bool, int, error) {
	lastLine, lastN, lastTotal, quietSince := time.Now(), -1, -1, time.Now()
	for {
		cur, _, err := l.server(ctx, server)
		if err != nil {
			return false, 0, err
		}
		if cur.Total != lastTotal {
			lastTotal, quietSince = cur.Total, time.Now()
		}
		n := cur.Sessions + cur.Queued
		if n == 0 && (!idle || time.Since(quietSince) >= l.sessionIdle) {
			return true, 0, nil
		}
		if n != lastN || time.Since(lastLine) >= l.progressEvery {
			what := fmt.Sprintf("%d in-flight session(s)", n)
			if idle {
				what += fmt.Sprintf(", last new session %s ago", time.Since(quietSince).Round(100*time.Millisecond))
			}
			progress.Printf("%s: waiting for %s (%s of %s)", server, what, time.Since(start).Round(100*time.Millisecond), timeout)
			lastLine, lastN = time.Now(), n
		}
		if time.Now().After(deadline) {
			return false, n, nil
		}
		select {
		case <-ctx.Done():
			return false, n, fmt.Errorf("draining %s: %w (%d sessions left)", server, ctx.Err(), n)
		case <-time.After(l.poll):
		}
	}
}

// guard refuses a drain that would leave fewer than min other servers up
// and ready.
func (l *LB) guard(name string, all []ServerStatus, min int) error {
	var ok, not []string
	for _, s := range all {
		if s.Name == name {
			continue
		}
		if s.inService() {
			ok = append(ok, s.Name)
		} else {
			not = append(not, fmt.Sprintf("%s (%s, %s)", s.Name, s.State, s.describe()))
		}
	}
	if len(ok) >= min {
		return nil
	}
	return fmt.Errorf("refusing to drain %s: %d other server(s) of backend %q up and ready (%s), min_in_service is %d; not in service: %s",
		name, len(ok), l.backend, list(ok), min, list(not))
}

// Enable puts a server back in rotation (READY) and waits until HAProxy's
// own health check reports it fully UP. A server already ready and UP is
// left alone.
func (l *LB) Enable(ctx context.Context, a lbkit.EnableArgs, progress lbkit.Progress) (lbkit.ServerResult, error) {
	if a.Timeout <= 0 {
		a.Timeout = 60 * time.Second
	}
	srv, _, err := l.server(ctx, a.Server)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	res := lbkit.ServerResult{Server: srv.Name, State: lbkit.StateReady}
	if srv.inService() {
		progress.Printf("%s is already ready and UP", srv.Name)
		return res, nil
	}
	if srv.State != lbkit.StateReady {
		if err := l.set(ctx, srv.Name, runtimeapi.StateReady); err != nil {
			return lbkit.ServerResult{}, err
		}
		progress.Printf("%s: ready set (was %s); waiting for the health check to report UP", srv.Name, srv.State)
	}
	deadline := time.Now().Add(a.Timeout)
	start, lastLine, lastStatus := time.Now(), time.Now(), ""
	for {
		cur, _, err := l.server(ctx, srv.Name)
		if err != nil {
			return lbkit.ServerResult{}, err
		}
		if cur.inService() {
			progress.Printf("%s: UP after %s", srv.Name, time.Since(start).Round(10*time.Millisecond))
			return res, nil
		}
		if cur.State != lbkit.StateReady {
			// Someone else changed it meanwhile: do not fight them.
			return lbkit.ServerResult{}, fmt.Errorf("server %s was set to %s by someone else while enable waited for it", srv.Name, cur.State)
		}
		if d := cur.describe(); d != lastStatus || time.Since(lastLine) >= l.progressEvery {
			progress.Printf("%s: %s (%s of %s)", srv.Name, d, time.Since(start).Round(100*time.Millisecond), a.Timeout)
			lastLine, lastStatus = time.Now(), d
		}
		if time.Now().After(deadline) {
			return lbkit.ServerResult{}, fmt.Errorf("server %s is not UP after %s; last status: %s", srv.Name, a.Timeout, cur.describe())
		}
		select {
		case <-ctx.Done():
			return lbkit.ServerResult{}, fmt.Errorf("enabling %s: %w (last status: %s)", srv.Name, ctx.Err(), cur.describe())
		case <-time.After(l.poll):
		}
	}
}

// CheckDrain reports whether drain has taken effect (the server is in
// maintenance), with a one-line detail.
func (l *LB) CheckDrain(ctx context.Context, server string) (bool, string, error) {
	srv, _, err := l.server(ctx, server)
	if err != nil {
		return false, "", err
	}
	if srv.State == lbkit.StateMaint {
		return true, fmt.Sprintf("%s is in maintenance", srv.Name), nil
	}
	return false, fmt.Sprintf("%s is %s (%s, %d sessions)", srv.Name, srv.State, srv.describe(), srv.Sessions), nil
}

// CheckEnable reports whether enable has taken effect (ready and UP).
func (l *LB) CheckEnable(ctx context.Context, server string) (bool, string, error) {
	srv, _, err := l.server(ctx, server)
	if err != nil {
		return false, "", err
	}
	if srv.inService() {
		return true, fmt.Sprintf("%s is ready and UP", srv.Name), nil
	}
	return false, fmt.Sprintf("%s is %s (%s)", srv.Name, srv.State, srv.describe()), nil
}

// set changes a server's state and, with a state file configured, saves
// the runtime state so that a reload keeps it.
func (l *LB) set(ctx context.Context, server string, state runtimeapi.AdminState) error {
	if err := l.client.SetServerState(ctx, l.backend, server, state); err != nil {
		return err
	}
	if l.stateFile == "" {
		return nil
	}
	if err := l.client.SaveServerState(ctx, l.stateFile); err != nil {
		return fmt.Errorf("%s is now %s, but saving the server state failed: %w", server, state, err)
	}
	return nil
}
