package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/nginxd"
	"github.com/upshift-dev/upshift/internal/testlab"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

// lab is a real nginx on a free loopback port in front of three backends,
// node-1..3, as in the demo lab.
type lab struct {
	inst     *nginxd.Nginx
	backends map[string]*testlab.Backend
	names    []string
}

func startLab(t *testing.T) *lab {
	t.Helper()
	if !nginxctl.Available() {
		t.Fatal("nginx is not installed (apt-get install nginx-light); these tests need the real server")
	}
	l := &lab{backends: map[string]*testlab.Backend{}}
	var servers []nginxctl.Server
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node-%d", i)
		b := testlab.StartBackend(t, name)
		l.backends[name] = b
		l.names = append(l.names, name)
		servers = append(servers, nginxctl.Server{Name: name, Addr: b.Addr})
	}
	inst, err := nginxd.StartWith(context.Background(), nginxd.Config{Dir: t.TempDir(), Servers: servers})
	require.NoError(t, err)
	l.inst = inst
	master := inst.MasterPID()
	t.Cleanup(func() {
		require.NoError(t, inst.Stop())
		assert.Empty(t, nginxctl.Workers(master), "nginx workers left behind")
	})
	return l
}

// config is the plugin's config for the lab: servers named by a map,
// health URLs for all three.
func (l *lab) config() map[string]cty.Value {
	servers, health := map[string]cty.Value{}, map[string]cty.Value{}
	for n, b := range l.backends {
		servers[n] = cty.StringVal(b.Addr)
		health[n] = cty.StringVal(b.HealthURL())
	}
	return map[string]cty.Value{
		"nginx_conf": cty.StringVal(l.inst.Conf), "upstream_file": cty.StringVal(l.inst.Upstream),
		"upstream": cty.StringVal(l.inst.Name), "pid_file": cty.StringVal(l.inst.PidFile),
		"servers": cty.MapVal(servers), "health_urls": cty.MapVal(health),
		"health_timeout": cty.StringVal("1s"), "nginx_binary": cty.NullVal(cty.String),
	}
}

// provider serves a fresh plugin over real in-process gRPC, configured for
// the lab with changes (a null value removes an attribute).
func (l *lab) provider(t *testing.T, changes map[string]cty.Value) plugins.Provider {
	t.Helper()
	p := sdktest.Provider(t, newPlugin())
	cfg := l.config()
	for k, v := range changes {
		cfg[k] = v
	}
	require.NoError(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: fullConfig(cfg)}).Err())
	return p
}

// fullConfig fills the attributes not given with nulls.
func fullConfig(cfg map[string]cty.Value) cty.Value {
	full := map[string]cty.Value{}
	for _, a := range configSchema.Attributes {
		full[a.Name] = cty.NullVal(a.Type)
	}
	for k, v := range cfg {
		full[k] = v
	}
	return cty.ObjectVal(full)
}

// call invokes an action (missing optional arguments null) and returns the
// response and the progress lines.
func call(t *testing.T, p plugins.Provider, action string, args map[string]cty.Value) (plugins.InvokeResponse, []string) {
	t.Helper()
	a := schema.ContractAction(schema.KindLoadBalancer, action)
	require.NotNil(t, a)
	full := map[string]cty.Value{}
	for _, attr := range a.Args.Attributes {
		full[attr.Name] = cty.NullVal(attr.Type)
	}
	for k, v := range args {
		full[k] = v
	}
	obj := cty.EmptyObjectVal
	if len(full) > 0 {
		obj = cty.ObjectVal(full)
	}
	var mu sync.Mutex
	var lines []string
	resp := p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: obj, Progress: func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}})
	mu.Lock()
	defer mu.Unlock()
	return resp, lines
}

func check(t *testing.T, p plugins.Provider, action, server string) plugins.CheckResponse {
	t.Helper()
	a := schema.ContractAction(schema.KindLoadBalancer, action)
	full := map[string]cty.Value{}
	for _, attr := range a.Args.Attributes {
		full[attr.Name] = cty.NullVal(attr.Type)
	}
	full["server"] = cty.StringVal(server)
	return p.Check(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(full)})
}

func args(server, timeout string) map[string]cty.Value {
	m := map[string]cty.Value{"server": cty.StringVal(server)}
	if timeout != "" {
		m["timeout"] = cty.StringVal(timeout)
	}
	return m
}

// slowRequest sends GET /slow?ms=ms through nginx and returns the backend
// serving it and a channel with the status code (0 on a transport error).
func (l *lab) slowRequest(t *testing.T, ms int) (string, <-chan int) {
	t.Helper()
	before := map[string]int64{}
	for n, b := range l.backends {
		before[n] = b.InFlight()
	}
	done := make(chan int, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get(fmt.Sprintf("%s/slow?ms=%d", l.inst.URL(), ms))
		if err != nil {
			done <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	var server string
	require.Eventually(t, func() bool {
		for n, b := range l.backends {
			if b.InFlight() > before[n] {
				server = n
				return true
			}
		}
		return false
	}, 3*time.Second, time.Millisecond, "the slow request reached no backend")
	return server, done
}

// fastGets sends n GET / through nginx, one connection each, and requires
// each to answer 200.
func (l *lab) fastGets(t *testing.T, n int) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := 0; i < n; i++ {
		resp, err := c.Get(l.inst.URL() + "/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

func (l *lab) hits() map[string]int64 {
	out := map[string]int64{}
	for n, b := range l.backends {
		out[n] = b.Hits()
	}
	return out
}

// upstream reads the upstream file's text.
func (l *lab) upstream(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(l.inst.Upstream)
	require.NoError(t, err)
	return string(b)
}

// downServers lists the servers marked down in the upstream file.
func (l *lab) downServers(t *testing.T) []string {
	t.Helper()
	servers, err := nginxctl.ReadUpstream(l.inst.Upstream)
	require.NoError(t, err)
	var out []string
	for _, s := range servers {
		if s.Down {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// oneLineErr requires a failed response with a one-line message and
// returns the message.
func oneLineErr(t *testing.T, d plugins.Diagnostics) string {
	t.Helper()
	require.True(t, d.HasErrors(), "expected an error")
	msg := d.Err().Error()
	assert.NotContains(t, msg, "\n", "errors are one line")
	return msg
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
