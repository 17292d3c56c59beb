package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// LB is the vendor logic of the nginx load_balancer plugin, in plain Go:
// one upstream block in a file upshift edits, and the nginx that includes
// it. lbkit binds it to the SDK (plugin.go only decodes and checks the
// config).
type LB struct {
	file     string            // the upstream file
	upstream string            // the upstream block's name
	names    map[string]string // server name -> address; nil: names from `# NAME` comments
	health   map[string]string // server name -> health URL
	ctl      nginxctl.Ctl      // Binary empty until first needed
	binGiven string
	log      *nginxctl.AccessLog // nil: no access_log configured

	client *http.Client
	// mu serialises edits of the upstream file and reloads: two drains of
	// one batch must not both pass the min_in_service guard.
	mu sync.Mutex
	// poll spaces health probes while enable waits.
	poll time.Duration
	// reloadWait bounds the wait for nginx to start workers with the new
	// configuration after SIGHUP.
	reloadWait time.Duration
}

// Options configure an LB; the plugin's config decodes into them.
type Options struct {
	NginxConf    string            `cty:"nginx_conf"`
	UpstreamFile string            `cty:"upstream_file"`
	Upstream     string            `cty:"upstream"`
	PidFile      string            `cty:"pid_file"`
	Binary       string            `cty:"nginx_binary"`
	Servers      map[string]string `cty:"servers"`
	HealthURLs   map[string]string `cty:"health_urls"`
	AccessLog    string            `cty:"access_log"`
	// HealthTimeout bounds each health probe; default 2s.
	HealthTimeout time.Duration `cty:"health_timeout,positive" default:"2s"`
}

// NewLB returns the logic for o. Nothing is read or contacted yet: validate
// and plan configure plugins on machines where nginx may not run.
func NewLB(o Options) *LB {
	if o.HealthTimeout == 0 {
		o.HealthTimeout = 2 * time.Second
	}
	return &LB{
		file: o.UpstreamFile, upstream: o.Upstream, names: o.Servers, health: o.HealthURLs,
		ctl:      nginxctl.Ctl{Conf: o.NginxConf, PidFile: o.PidFile},
		binGiven: o.Binary,
		client: &http.Client{Timeout: o.HealthTimeout, Transport: &http.Transport{
			DisableKeepAlives: true, Proxy: nil, ResponseHeaderTimeout: o.HealthTimeout,
		}},
		poll:       200 * time.Millisecond,
		reloadWait: 10 * time.Second,
		log:        newAccessLog(o.AccessLog),
	}
}

func newAccessLog(path string) *nginxctl.AccessLog {
	if path == "" {
		return nil
	}
	return nginxctl.NewAccessLog(path)
}

// ServerStatus is one server as the plugin reports it.
type ServerStatus struct {
	Name, Addr string
	State      string // ready | maint (marked down in the upstream file)
	Health     string // up | down | unknown (no health URL)
	Why        string // the probe's answer, e.g. "503 Service Unavailable"
}

// ctlFor resolves nginx's binary on first use.
func (l *LB) ctlFor() (nginxctl.Ctl, error) {
	if l.ctl.Binary == "" {
		bin, err := nginxctl.Binary(l.binGiven)
		if err != nil {
			return nginxctl.Ctl{}, err
		}
		l.ctl.Binary = bin
	}
	return l.ctl, nil
}

// load reads and parses the upstream file.
func (l *LB) load() (*nginxctl.Upstream, []byte, error) {
	b, err := os.ReadFile(l.file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, fmt.Errorf("upstream file %s: %w", l.file, err)
	}
	u, err := nginxctl.ParseUpstream(l.file, b, l.upstream)
	return u, b, err
}

// Affinity reports whether the upstream block keeps a client on one
// server (see nginxctl.Upstream.Sticky).
func (l *LB) Affinity(context.Context) (lbkit.Affinity, error) {
	u, _, err := l.load()
	if err != nil {
		return lbkit.Affinity{}, err
	}
	on, how := u.Sticky()
	a := lbkit.Affinity{On: on, How: fmt.Sprintf("upstream %s: %s", l.upstream, how)}
	if !on {
		a.Enable = fmt.Sprintf("add `hash $cookie_<session cookie> consistent;` to upstream %s in %s (the platform must set that cookie), then reload nginx", l.upstream, l.file)
	}
	return a, nil
}

// nameOf names the server at index i of u.
func (l *LB) nameOf(u *nginxctl.Upstream, i int) string {
	addr := u.Servers[i].Addr
	if l.names != nil {
		for n, a := range l.names {
			if a == addr {
				return n
			}
		}
		return addr
	}
	if u.Servers[i].Name != "" {
		return u.Servers[i].Name
	}
	return addr
}

// find returns the index in u of the server named server.
func (l *LB) find(u *nginxctl.Upstream, server string) (int, error) {
	if l.names != nil {
		addr, ok := l.names[server]
		if !ok {
			return -1, sdk.ArgError("server", "%s", fmt.Sprintf("no server named %q in upstream %s (servers: %s)", server, l.upstream, strings.Join(sortedKeys(l.names), ", ")))
		}
		i := u.Index(addr)
		if i < 0 {
			return -1, fmt.Errorf("server %s (%s) is not in upstream %s of %s", server, addr, l.upstream, l.file)
		}
		return i, nil
	}
	var names []string
	for i := range u.Servers {
		n := l.nameOf(u, i)
		if n == server {
			return i, nil
		}
		names = append(names, n)
	}
	return -1, sdk.ArgError("server", "%s", fmt.Sprintf("no server named %q in upstream %s of %s (servers: %s)", server, l.upstream, l.file, strings.Join(names, ", ")))
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// probe asks a server's health URL. ok is true for a 2xx answer; why says
// what came back. known is false when the server has no health URL.
func (l *LB) probe(ctx context.Context, server string) (ok, known bool, why string) {
	u, has := l.health[server]
	if !has {
		return false, false, "no health URL"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, true, "bad health URL"
	}
	resp, err := l.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named by the caller, redacted
		}
		return false, true, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300, true, resp.Status
}

// healthURL is the server's health URL for messages, without credentials.
func (l *LB) healthURL(server string) string {
	u, err := url.Parse(l.health[server])
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// probeAll probes every server of u at once.
func (l *LB) probeAll(ctx context.Context, u *nginxctl.Upstream) []ServerStatus {
	out := make([]ServerStatus, len(u.Servers))
	var wg sync.WaitGroup
	for i, s := range u.Servers {
		out[i] = ServerStatus{Name: l.nameOf(u, i), Addr: s.Addr, State: lbkit.StateReady, Health: lbkit.HealthUnknown}
		if s.Down {
			out[i].State = lbkit.StateMaint
		}
		wg.Add(1)
		go func(st *ServerStatus) {
			defer wg.Done()
			ok, known, why := l.probe(ctx, st.Name)
			st.Why = why
			switch {
			case !known:
			case ok:
				st.Health = lbkit.HealthUp
			default:
				st.Health = lbkit.HealthDown
			}
		}(&out[i])
	}
	wg.Wait()
	return out
}

var (
	_ lbkit.Backend = (*LB)(nil)
	_ lbkit.Pinger  = (*LB)(nil)
)

// Ping says whether nginx's master process runs: Servers answers from the
// upstream file and the servers' health URLs without asking nginx, so a
// stopped nginx would pass preflight and fail the run's first drain.
func (l *LB) Ping(context.Context) error {
	ctl, err := l.ctlFor()
	if err != nil {
		return err
	}
	_, err = ctl.Master()
	return err
}

// Servers is Status as the contract's status action reports it; nginx
// (open source) does not count sessions per server.
func (l *LB) Servers(ctx context.Context) ([]lbkit.Server, error) {
	all, err := l.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]lbkit.Server, len(all))
	for i, s := range all {
		out[i] = lbkit.Server{Name: s.Name, State: s.State, Health: s.Health}
	}
	return out, nil
}

// Status returns every server of the upstream, in file order. Sessions
// are not known: nginx (open source) does not count them per server.
func (l *LB) Status(ctx context.Context) ([]ServerStatus, error) {
	u, _, err := l.load()
	if err != nil {
		return nil, err
	}
	return l.probeAll(ctx, u), nil
}

// apply writes u over the upstream file (whose bytes were old), checks the
// whole configuration with `nginx -t` and reloads. Any failure before the
// reload took effect puts the old bytes back: nothing changed. It returns
// the workers of the previous configuration.
func (l *LB) apply(ctx context.Context, u *nginxctl.Upstream, old []byte) ([]int, error) {
	ctl, err := l.ctlFor()
	if err != nil {
		return nil, err
	}
	// The master must be there before anything is written: a change that
	// cannot be reloaded is not made.
	if _, err := ctl.Master(); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFile(l.file, u.Bytes(), 0o644); err != nil {
		return nil, err
	}
	restore := func(cause error) error {
		if rerr := fsutil.WriteFile(l.file, old, 0o644); rerr != nil {
			return fmt.Errorf("%v; and restoring %s failed: %v", cause, l.file, rerr)
		}
		return cause
	}
	if err := ctl.Test(ctx); err != nil {
		return nil, restore(err)
	}
	workers, err := ctl.Reload(ctx, l.reloadWait)
	if err != nil {
		return nil, restore(err)
	}
	return workers, nil
}

// Drain marks the server down, reloads, and waits until the workers that
// could still be sending it requests have finished them.
func (l *LB) Drain(ctx context.Context, a lbkit.DrainArgs, progress lbkit.Progress) (lbkit.ServerResult, error) {
	start := time.Now()
	done := lbkit.ServerResult{Server: a.Server, State: lbkit.StateMaint}
	if aff, err := l.Affinity(ctx); err == nil && aff.On {
		// nginx open source has no drain state: a server marked down gets
		// no request, its clients' hash moves them to other servers at once.
		progress.Printf("%s: session affinity is on (%s): nginx open source cannot keep a marked-down server's clients, so they are redispatched now", a.Server, aff.How)
	}
	old, already, err := l.markDown(ctx, a, progress)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	if already {
		// Down already, perhaps by a drain that timed out or died while
		// waiting: workers of an older configuration may still be serving
		// this server's requests.
		ctl, err := l.ctlFor()
		if err != nil {
			return lbkit.ServerResult{}, err
		}
		master, err := ctl.Master()
		if err != nil {
			return lbkit.ServerResult{}, err
		}
		old = nginxctl.ShuttingDown(master)
		if len(old) == 0 {
			progress.Printf("%s is already out of rotation", a.Server)
			return done, nil
		}
		progress.Printf("%s is already marked down; waiting for %d old nginx worker(s) to finish their requests", a.Server, len(old))
	}
	left, err := nginxctl.WaitExited(ctx, old, a.Timeout-time.Since(start), func(n int) {
		progress.Printf("%s: waiting for %d nginx worker(s) of the previous configuration to finish their in-flight requests", a.Server, n)
	})
	if err != nil {
		if ctx.Err() != nil {
			return lbkit.ServerResult{}, fmt.Errorf("draining %s: %w", a.Server, ctx.Err())
		}
		return lbkit.ServerResult{}, fmt.Errorf("server %s: %d nginx worker(s) still serving requests of the previous configuration after %s; %s stays marked down (no new requests), run drain again to keep waiting",
			a.Server, left, a.Timeout, a.Server)
	}
	progress.Printf("%s drained: out of rotation, no worker of the previous configuration left", a.Server)
	return done, nil
}

// markDown is drain's change, under the lock: guard, edit, check, reload.
func (l *LB) markDown(ctx context.Context, a lbkit.DrainArgs, progress lbkit.Progress) (old []int, already bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, before, err := l.load()
	if err != nil {
		return nil, false, err
	}
	i, err := l.find(u, a.Server)
	if err != nil {
		return nil, false, err
	}
	if u.Servers[i].Down {
		return nil, true, nil
	}
	var in, out []string
	for j, st := range l.probeAll(ctx, u) {
		switch {
		case j == i:
		case st.State != lbkit.StateReady:
			out = append(out, st.Name+" (marked down)")
		case st.Health == lbkit.HealthDown:
			out = append(out, fmt.Sprintf("%s (health %s: %s)", st.Name, l.healthURL(st.Name), st.Why))
		default: // up, or unknown: no health URL to ask, nginx's passive checks decide
			in = append(in, st.Name)
		}
	}
	if len(in) < a.MinInService {
		msg := fmt.Sprintf("refusing to drain %s: %d other server(s) of upstream %s in service (%s), min_in_service is %d", a.Server, len(in), l.upstream, orNone(in), a.MinInService)
		if len(out) > 0 {
			msg += "; not in service: " + strings.Join(out, ", ")
		}
		return nil, false, sdk.ArgError("min_in_service", "%s", msg)
	}
	u.SetDown(i, true)
	progress.Printf("marking %s (%s) down in %s, checking with nginx -t and reloading", a.Server, u.Servers[i].Addr, l.file)
	old, err = l.apply(ctx, u, before)
	if err != nil {
		return nil, false, fmt.Errorf("draining %s: %w", a.Server, err)
	}
	return old, false, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Enable puts the server back in rotation. nginx (open source) has no
// active health check and would send requests the moment the server is
// back in the file, so enable first waits until the server answers its
// health URL, then removes `down`, checks, reloads, waits until workers
// with the new configuration run, and asks the health URL once more.
func (l *LB) Enable(ctx context.Context, a lbkit.EnableArgs, progress lbkit.Progress) (lbkit.ServerResult, error) {
	deadline := time.Now().Add(a.Timeout)
	done := lbkit.ServerResult{Server: a.Server, State: lbkit.StateReady}
	u, _, err := l.load()
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	i, err := l.find(u, a.Server)
	if err != nil {
		return lbkit.ServerResult{}, err
	}
	wasDown := u.Servers[i].Down
	if err := l.waitHealthy(ctx, a.Server, deadline, a.Timeout, wasDown, progress); err != nil {
		return lbkit.ServerResult{}, err
	}
	if !wasDown {
		progress.Printf("%s is already in rotation", a.Server)
		return done, nil
	}
	if err := l.markUp(ctx, a.Server, progress); err != nil {
		return lbkit.ServerResult{}, err
	}
	if _, known, _ := l.probe(ctx, a.Server); !known {
		progress.Printf("%s is back in rotation (no health URL: nginx's passive checks are all that guard it)", a.Server)
		return done, nil
	}
	if err := l.waitHealthy(ctx, a.Server, deadline, a.Timeout, false, progress); err != nil {
		return lbkit.ServerResult{}, err
	}
	progress.Printf("%s is back in rotation and answers its health URL", a.Server)
	return done, nil
}

// waitHealthy waits until server answers its health URL with 2xx, or the
// deadline. A server without a health URL passes at once.
func (l *LB) waitHealthy(ctx context.Context, server string, deadline time.Time, timeout time.Duration, stillDown bool, progress lbkit.Progress) error {
	lastWhy, lastAt := "", time.Time{}
	for {
		ok, known, why := l.probe(ctx, server)
		if ok || !known {
			return nil
		}
		if time.Now().After(deadline) {
			state := "it is in rotation"
			if stillDown {
				state = "left out of rotation"
			}
			return fmt.Errorf("server %s does not answer its health URL %s after %s (last: %s); %s", server, l.healthURL(server), timeout, why, state)
		}
		if why != lastWhy || time.Since(lastAt) >= time.Second {
			progress.Printf("waiting for %s to answer %s: %s", server, l.healthURL(server), why)
			lastWhy, lastAt = why, time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enabling %s: %w", server, ctx.Err())
		case <-time.After(l.poll):
		}
	}
}

// markUp is enable's change, under the lock. The file is read again: it
// may have changed while enable waited for health.
func (l *LB) markUp(ctx context.Context, server string, progress lbkit.Progress) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, before, err := l.load()
	if err != nil {
		return err
	}
	i, err := l.find(u, server)
	if err != nil {
		return err
	}
	if !u.SetDown(i, false) {
		return nil
	}
	progress.Printf("removing down from %s (%s) in %s, checking with nginx -t and reloading", server, u.Servers[i].Addr, l.file)
	if _, err := l.apply(ctx, u, before); err != nil {
		return fmt.Errorf("enabling %s: %w", server, err)
	}
	return nil
}

// CheckDrain: applied when the server is marked down and no worker of an
// older configuration is still finishing requests.
func (l *LB) CheckDrain(ctx context.Context, server string) (bool, string, error) {
	u, _, err := l.load()
	if err != nil {
		return false, "", err
	}
	i, err := l.find(u, server)
	if err != nil {
		return false, "", err
	}
	if !u.Servers[i].Down {
		return false, server + " is in rotation", nil
	}
	ctl, err := l.ctlFor()
	if err != nil {
		return false, "", err
	}
	master, err := ctl.Master()
	if err != nil {
		return false, "", err
	}
	if n := len(nginxctl.ShuttingDown(master)); n > 0 {
		return false, fmt.Sprintf("%s is marked down; %d old worker(s) still finishing requests", server, n), nil
	}
	return true, server + " is marked down", nil
}

// CheckEnable: applied when the server is in rotation and answers its
// health URL (or has none).
func (l *LB) CheckEnable(ctx context.Context, server string) (bool, string, error) {
	u, _, err := l.load()
	if err != nil {
		return false, "", err
	}
	i, err := l.find(u, server)
	if err != nil {
		return false, "", err
	}
	if u.Servers[i].Down {
		return false, server + " is marked down", nil
	}
	if ok, known, why := l.probe(ctx, server); known && !ok {
		return false, fmt.Sprintf("%s is in rotation but its health URL answers: %s", server, why), nil
	}
	return true, server + " is in rotation", nil
}
