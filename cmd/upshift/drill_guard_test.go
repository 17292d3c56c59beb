package main

// Drill of the traffic guard (issue 13, item 2) on the real lab under
// traffic: node-2's version 2 answers 500 on one route, and the guard of a
// copy of the shipped playbook halts the rollout and takes node-2 out of
// rotation.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
)

// The guard the drill adds to the shipped playbook's rollout.
const (
	drillGuardInterval  = 250 * time.Millisecond
	drillGuardWindow    = 10 * time.Second
	drillMaxServerErrs  = 5
	drillBadRoute       = "/version"            // the lab's own traffic does not ask it
	drillBadRouteRate   = 20 * time.Millisecond // a request to the bad route every 20ms
	drillVersionHeader  = "X-Platform-Version"
	drillServerHeader   = "X-Upshift-Server" // haproxyd.ServerHeader: the server that answered
	drillGuardedRollout = "upgrade"
)

// faultyProxy stands in front of a node: it forwards everything, but a
// version-2 answer to the bad route becomes a 500. platformd has no hook
// for this; the lab's HAProxy is pointed at the proxy instead of the node
// through its runtime API (set server ... addr), so the node, its config
// and the playbook's variables stay as they are.
func faultyProxy(t *testing.T, node string) string {
	t.Helper()
	target, err := url.Parse("http://" + node)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == drillBadRoute && resp.Header.Get(drillVersionHeader) == "2" {
			_ = resp.Body.Close()
			body := `{"error":"drill","detail":"version 2 fails this route"}`
			resp.StatusCode, resp.Status = http.StatusInternalServerError, "500 Internal Server Error"
			resp.Body = readCloser{strings.NewReader(body)}
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: rp}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// haproxyCommand sends one runtime API command to HAProxy's admin socket.
func haproxyCommand(t *testing.T, socket, command string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write([]byte(command + "\n"))
	require.NoError(t, err)
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// badRouteClient asks the bad route through the load balancer at a steady
// rate and keeps what came back.
type badRouteClient struct {
	mu      sync.Mutex
	sent    int
	failed  []time.Time
	byNode  map[string]int
	stop    chan struct{}
	stopped chan struct{}
}

func startBadRouteClient(base string) *badRouteClient {
	c := &badRouteClient{byNode: map[string]int{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(c.stopped)
		tick := time.NewTicker(drillBadRouteRate)
		defer tick.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			resp, err := client.Get(base + drillBadRoute)
			c.mu.Lock()
			c.sent++
			if err != nil || resp.StatusCode >= 500 {
				c.failed = append(c.failed, time.Now())
				if err == nil {
					c.byNode[resp.Header.Get(drillServerHeader)]++
				} else {
					c.byNode["(no answer)"]++
				}
			}
			c.mu.Unlock()
			if err == nil {
				_ = resp.Body.Close()
			}
		}
	}()
	return c
}

func (c *badRouteClient) Stop() (sent int, failed []time.Time, byNode map[string]int) {
	close(c.stop)
	<-c.stopped
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, append([]time.Time(nil), c.failed...), c.byNode
}

// jsonEvent is a line of `upshift run --json`.
type jsonEvent struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Address string    `json:"address"`
	Error   string    `json:"error"`
	Message string    `json:"message"`
}

// TestDrillGuardHaltsOnNode2Errors: node-2's version 2 answers 500 on
// /version (a fault proxy in front of it); a client asks /version through
// the load balancer 50 times a second besides the lab's traffic. The guard of a copy of the shipped
// playbook (on_failure = "rollback", max_server_errors = 5 over 10s: the
// old-version nodes refuse writes with 503 while read-only, which a
// backend budget would count) halts
// the rollout within one window of node-2's enable, says so naming the
// counter and node-2, and takes node-2 out of rotation; node-3 is put back
// on version 1 in rotation; the lab's own reads and writes see no failure.
func TestDrillGuardHaltsOnNode2Errors(t *testing.T) {
	needHAProxy(t)
	longDrill(t)
	d := startDrillLab(t, "lab")
	require.Len(t, d.s.Nodes, 3)
	node2 := d.s.Nodes[1]
	require.Equal(t, "node-2", node2.Name)

	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	hcl := filepath.Join(playbook, "upgrade.hcl")
	src, err := os.ReadFile(hcl)
	require.NoError(t, err)
	guard := fmt.Sprintf(`on_failure   = "rollback"

  guard {
    metrics           = load_balancer.front
    interval          = "%s"
    window            = "%s"
    max_server_errors = %d
  }`, drillGuardInterval, drillGuardWindow, drillMaxServerErrs)
	guarded := strings.Replace(string(src), `on_failure   = "halt"`, guard, 1)
	require.NotEqual(t, string(src), guarded)
	require.NoError(t, os.WriteFile(hcl, []byte(guarded), 0o644))

	// HAProxy sends node-2's traffic, health checks included, through
	// the fault proxy.
	proxy := faultyProxy(t, node2.Address)
	host, port, err := net.SplitHostPort(proxy)
	require.NoError(t, err)
	out := haproxyCommand(t, d.s.HAProxyCtl().Socket, fmt.Sprintf("set server %s/%s addr %s port %s", lab.Backend, node2.Name, host, port))
	require.NotContains(t, strings.ToLower(out), "error", out)
	require.NotContains(t, strings.ToLower(out), "unknown", out)

	bad := startBadRouteClient(d.s.URL())
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())
	runOut, code := runCode(t, "run", playbook, "-var-file", d.s.VarsFile(), "--json")
	// The route answers again, node-2 out of rotation: a second of it.
	time.Sleep(time.Second)
	sent, failed, byNode := bad.Stop()
	require.Equal(t, exitFailed, code, runOut)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(runOut)
		}
	})

	var enabledAt, trippedAt, drainedAt time.Time
	var trip string
	for _, line := range strings.Split(runOut, "\n") {
		var e jsonEvent
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch {
		case e.Type == "step_finished" && e.Address == `step.enable["node-2"]`:
			enabledAt = e.Time
		case e.Type == "step_failed" && e.Address == "rollout."+drillGuardedRollout && trip == "":
			trippedAt, trip = e.Time, e.Error
		case e.Type == "step_finished" && e.Address == `step.enable["node-2"].undo`:
			drainedAt = e.Time
		}
	}
	require.NotEmpty(t, trip, "the guard tripped:\n%s", runOut)
	require.False(t, enabledAt.IsZero(), "node-2 was enabled:\n%s", runOut)
	assert.Regexp(t, `the traffic guard of rollout "upgrade" halted it: server node-2 counted \d+ errors \(http_5xx \d+, connection_errors \d+, response_errors \d+\) over the last 10s, over its budget of max_server_errors = 5; item "node-2" blamed; \d+ of \d+ samples failed`, trip)
	assert.Contains(t, runOut, `not started: the traffic guard of rollout \"upgrade\" halted it`, "the next instance was refused with the guard's message")
	assert.WithinDuration(t, enabledAt, trippedAt, drillGuardWindow, "the guard halted within one window of node-2's enable")

	// node-2 is out of rotation; node-3 back on version 1, in rotation;
	// node-1 stays upgraded.
	stat := haproxyCommand(t, d.s.HAProxyCtl().Socket, "show servers state "+lab.Backend)
	found := false
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line) // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
		if len(f) > 6 && f[3] == "node-2" {
			found = true
			assert.NotEqual(t, "0", f[6], "node-2 in maintenance (srv_admin_state): %s", line)
		}
	}
	assert.True(t, found, "HAProxy knows node-2:\n%s", stat)
	assert.Equal(t, "2", health(t, d.s.Nodes[0].Address).Version, "node-1 stays upgraded")
	// node-3 was being upgraded when the guard halted: it is rolled back,
	// back on version 1 and in rotation, unless its migration had run
	// (no undo): then it is left drained and stopped, and said so.
	if resp, err := http.Get("http://" + d.s.Nodes[2].Address + "/version"); err == nil {
		_ = resp.Body.Close()
		assert.Equal(t, "1", resp.Header.Get(drillVersionHeader), "node-3 back on version 1")
		t.Logf("node-3 rolled back to version 1")
	} else {
		assert.Regexp(t, `node-3: stopped in rollout "upgrade" after \d+ of 9 steps`, runOut, "node-3 left out of rotation, and said so")
		assert.Contains(t, runOut, `step.migrate[\"node-3\"].undo`, "its migration has no undo")
		t.Logf("node-3 left drained and stopped: its migration had run")
	}

	var afterDrain int
	for _, f := range failed {
		if !drainedAt.IsZero() && f.After(drainedAt) {
			afterDrain++
		}
	}
	t.Logf("DRILL traffic guard: %d requests to %s, %d failed (by server %v), %d after node-2 was drained; budget max_server_errors %d over %s, sampled every %s; node-2's enable ended %s, guard halted %s later, node-2 drained %s after the halt",
		sent, drillBadRoute, len(failed), byNode, afterDrain, drillMaxServerErrs, drillGuardWindow, drillGuardInterval,
		enabledAt.Format("15:04:05.000"), trippedAt.Sub(enabledAt).Round(time.Millisecond), drainedAt.Sub(trippedAt).Round(time.Millisecond))
	assert.Zero(t, afterDrain, "no failure once node-2 was out of rotation")
	// The load balancer counts what clients see, so the clients of the bad
	// route saw the budget and one more at least; what passes beyond that
	// is what arrives while the guard samples and drains: bounded here by
	// two intervals and a second of drain at the route's rate.
	assert.LessOrEqual(t, len(failed), drillMaxServerErrs+int((2*drillGuardInterval+time.Second)/drillBadRouteRate), "failures seen by the bad route's clients")

	status := runOK(t, "status", playbook, "--json")
	var doc struct {
		Clusters []struct {
			Current struct {
				Samples []struct {
					Rollout string `json:"rollout"`
					Error   string `json:"error"`
				} `json:"samples"`
			} `json:"current"`
		} `json:"clusters"`
	}
	require.NoError(t, json.Unmarshal([]byte(status), &doc))
	require.Len(t, doc.Clusters, 1)
	assert.NotEmpty(t, doc.Clusters[0].Current.Samples, "status --json shows the guard's samples")
	d.finish(t, "traffic guard")
}
