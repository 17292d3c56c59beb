package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
	"github.com/upshift-dev/upshift/schema"
)

func TestPluginSchemaIsTheContract(t *testing.T) {
	t.Parallel()
	p := sdktest.Provider(t, newPlugin())
	s, err := p.Schema(context.Background())
	require.NoError(t, err)
	assert.Equal(t, schema.KindLoadBalancer, s.Kind)
	require.NoError(t, schema.CheckContract(s))
	assert.Equal(t, []string{"drain", "enable", "metrics", "preflight", "status", "verify"}, s.ActionNames())
	assert.Equal(t, []string{"nginx_conf", "upstream_file", "upstream", "pid_file", "servers", "health_urls", "health_timeout", "nginx_binary", "access_log"}, s.Config.Names())
}

func TestPluginConfigureErrors(t *testing.T) {
	t.Parallel()
	base := map[string]cty.Value{
		"nginx_conf": cty.StringVal("/etc/nginx/nginx.conf"), "upstream_file": cty.StringVal("/etc/nginx/upstream.conf"),
		"upstream": cty.StringVal("app"), "pid_file": cty.StringVal("/run/nginx.pid"),
	}
	servers := cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("127.0.0.1:18081"), "node-2": cty.StringVal("127.0.0.1:18082")})
	for name, tc := range map[string]struct {
		change map[string]cty.Value
		attr   string
		says   string
	}{
		"empty upstream":       {map[string]cty.Value{"upstream": cty.StringVal("")}, "upstream", "empty"},
		"bad address":          {map[string]cty.Value{"servers": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("nowhere")})}, "servers", "node-1"},
		"same address twice":   {map[string]cty.Value{"servers": cty.MapVal(map[string]cty.Value{"a": cty.StringVal("127.0.0.1:1"), "b": cty.StringVal("127.0.0.1:1")})}, "servers", "same address"},
		"health of no server":  {map[string]cty.Value{"servers": servers, "health_urls": cty.MapVal(map[string]cty.Value{"node-9": cty.StringVal("http://127.0.0.1:1/")})}, "health_urls", "node-9"},
		"health URL not http":  {map[string]cty.Value{"health_urls": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("ftp://admin:hunter2@127.0.0.1/")})}, "health_urls", "node-1"},
		"bad health timeout":   {map[string]cty.Value{"health_timeout": cty.StringVal("soon")}, "health_timeout", "soon"},
		"missing nginx binary": {map[string]cty.Value{"nginx_binary": cty.StringVal("/nonexistent/nginx")}, "nginx_binary", "/nonexistent/nginx"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := map[string]cty.Value{}
			for k, v := range base {
				cfg[k] = v
			}
			for k, v := range tc.change {
				cfg[k] = v
			}
			p := sdktest.Provider(t, newPlugin())
			d := p.Configure(context.Background(), plugins.ConfigureRequest{Config: fullConfig(cfg)})
			msg := oneLineErr(t, d)
			assert.Equal(t, tc.attr, d[0].Attribute, msg)
			assert.Contains(t, msg, tc.says)
			assert.NotContains(t, msg, "hunter2", "a URL's password is never shown")
		})
	}
}

// TestDrainWaitsThenEnable is the plugin's main path over gRPC: drain
// waits for an in-flight slow request (which completes with 200), then the
// server gets no traffic; both actions are idempotent; enable brings it
// back and it takes traffic.
func TestDrainWaitsThenEnable(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)

	server, done := l.slowRequest(t, 1000)
	assert.Equal(t, plugins.CheckNotApplied, check(t, p, "drain", server).State)
	start := time.Now()
	resp, lines := call(t, p, "drain", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	took := time.Since(start)
	// The backend answered before the old worker could relay it and exit;
	// the client may take a moment longer to read the answer.
	assert.Zero(t, l.backends[server].InFlight(), "drain returned while the slow request was still in flight")
	select {
	case code := <-done:
		assert.Equal(t, http.StatusOK, code, "the in-flight request finished")
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never finished")
	}
	assert.Greater(t, took, 500*time.Millisecond, "drain waited for the old worker")
	assert.Equal(t, "maint", resp.Result.GetAttr("state").AsString())
	assert.Equal(t, server, resp.Result.GetAttr("server").AsString())
	assert.True(t, contains(lines, "waiting for 1 nginx worker"), "progress: %q", lines)
	assert.Equal(t, []string{server}, l.downServers(t))

	before := l.hits()
	l.fastGets(t, 30)
	after := l.hits()
	assert.Equal(t, before[server], after[server], "a drained server gets no traffic")
	for _, n := range l.names {
		if n != server {
			assert.Greater(t, after[n], before[n], "%s takes traffic", n)
		}
	}

	cr := check(t, p, "drain", server)
	assert.Equal(t, plugins.CheckApplied, cr.State, cr.Detail)
	text := l.upstream(t)
	resp, lines = call(t, p, "drain", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, contains(lines, "already out of rotation"), "%q", lines)
	assert.Equal(t, text, l.upstream(t), "a second drain changes nothing")

	st, _ := call(t, p, "status", nil)
	require.NoError(t, st.Diagnostics.Err())
	got := map[string]string{}
	for _, s := range st.Result.GetAttr("servers").AsValueSlice() {
		got[s.GetAttr("name").AsString()] = s.GetAttr("state").AsString() + "/" + s.GetAttr("health").AsString()
		n, _ := s.GetAttr("sessions").AsBigFloat().Int64()
		assert.Zero(t, n)
	}
	want := map[string]string{}
	for _, n := range l.names {
		want[n] = "ready/up"
	}
	want[server] = "maint/up"
	assert.Equal(t, want, got)

	assert.Equal(t, plugins.CheckNotApplied, check(t, p, "enable", server).State)
	resp, lines = call(t, p, "enable", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, "ready", resp.Result.GetAttr("state").AsString())
	assert.True(t, contains(lines, "answers its health URL"), "%q", lines)
	assert.Empty(t, l.downServers(t))
	before = l.hits()
	l.fastGets(t, 30)
	assert.Greater(t, l.hits()[server], before[server], "enabled again, it takes traffic")
	assert.Equal(t, plugins.CheckApplied, check(t, p, "enable", server).State)

	text = l.upstream(t)
	resp, lines = call(t, p, "enable", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, contains(lines, "already in rotation"), "%q", lines)
	assert.Equal(t, text, l.upstream(t))
}

// TestDrainKeepsOperatorLines: only `down` of one line changes; comments,
// other directives and other parameters stay as written.
func TestDrainKeepsOperatorLines(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	a1, a2, a3 := l.backends["node-1"].Addr, l.backends["node-2"].Addr, l.backends["node-3"].Addr
	text := "# hand-written\nupstream app {\n    zone app 64k;\n    server " + a1 + " weight=2 max_fails=3;\n" +
		"\tserver " + a2 + ";   # second\n    server " + a3 + " backup;\n}\n"
	require.NoError(t, os.WriteFile(l.inst.Upstream, []byte(text), 0o644))
	require.NoError(t, l.inst.Reload(context.Background(), 5*time.Second))
	p := l.provider(t, nil)
	resp, _ := call(t, p, "drain", args("node-2", "5s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, strings.Replace(text, a2+";", a2+" down;", 1), l.upstream(t))
	resp, _ = call(t, p, "enable", args("node-2", "5s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, text, l.upstream(t))
}

// TestNamesFromComments: without a servers map the names are the `# NAME`
// comments nginxd (and the demo lab) write.
func TestNamesFromComments(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, map[string]cty.Value{"servers": cty.NullVal(cty.Map(cty.String))})
	resp, _ := call(t, p, "drain", args("node-2", "5s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, []string{"node-2"}, l.downServers(t))
	resp, _ = call(t, p, "drain", args("node-9", "5s"))
	msg := oneLineErr(t, resp.Diagnostics)
	assert.Equal(t, "server", resp.Diagnostics[0].Attribute)
	assert.Contains(t, msg, "node-1, node-2, node-3")
}

// TestMinInService: the guard counts other servers not marked down that
// answer their health URL, and a refusal changes nothing. Drains of one
// batch run at once and cannot both pass the guard.
func TestMinInService(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)
	text := l.upstream(t)

	l.backends["node-3"].SetHealthy(false)
	resp, _ := call(t, p, "drain", map[string]cty.Value{"server": cty.StringVal("node-1"), "min_in_service": cty.NumberIntVal(2)})
	msg := oneLineErr(t, resp.Diagnostics)
	assert.Equal(t, "min_in_service", resp.Diagnostics[0].Attribute)
	assert.Contains(t, msg, "refusing to drain node-1: 1 other server(s) of upstream app in service (node-2), min_in_service is 2")
	assert.Contains(t, msg, "node-3 (health http://"+l.backends["node-3"].Addr+"/healthz: 503 Service Unavailable)")
	assert.Equal(t, text, l.upstream(t), "a refused drain changes nothing")
	l.backends["node-3"].SetHealthy(true)

	// Three drains at once, min_in_service 1: two pass, the third is
	// refused, and one server is left in rotation.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, n := range l.names {
		wg.Add(1)
		go func(i int, n string) {
			defer wg.Done()
			resp, _ := call(t, p, "drain", args(n, "10s"))
			errs[i] = resp.Diagnostics.Err()
		}(i, n)
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			assert.Contains(t, err.Error(), "min_in_service is 1")
		}
	}
	assert.Equal(t, 1, failed, "%v", errs)
	assert.Len(t, l.downServers(t), 2)
	l.fastGets(t, 5)
}

// TestEnableWaitsForHealth: nginx would send requests at once, so enable
// puts a server back only once it answers its health URL, and a server
// that never does stays out of rotation.
func TestEnableWaitsForHealth(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)
	resp, _ := call(t, p, "drain", args("node-1", "5s"))
	require.NoError(t, resp.Diagnostics.Err())

	l.backends["node-1"].SetHealthy(false)
	text := l.upstream(t)
	start := time.Now()
	resp, lines := call(t, p, "enable", args("node-1", "1s"))
	msg := oneLineErr(t, resp.Diagnostics)
	assert.GreaterOrEqual(t, time.Since(start), time.Second)
	assert.Contains(t, msg, "server node-1 does not answer its health URL http://"+l.backends["node-1"].Addr+"/healthz after 1s (last: 503 Service Unavailable); left out of rotation")
	assert.True(t, contains(lines, "waiting for node-1"), "%q", lines)
	assert.Equal(t, text, l.upstream(t), "left out of rotation")

	go func() {
		time.Sleep(500 * time.Millisecond)
		l.backends["node-1"].SetHealthy(true)
	}()
	resp, _ = call(t, p, "enable", args("node-1", "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.Empty(t, l.downServers(t))
}

// TestDrainTimeoutThenResume: a request longer than the timeout fails the
// drain but cuts nothing; the server stays down, and a second drain (a
// resumed run) waits for what is left.
func TestDrainTimeoutThenResume(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)
	server, done := l.slowRequest(t, 2000)
	resp, _ := call(t, p, "drain", args(server, "300ms"))
	msg := oneLineErr(t, resp.Diagnostics)
	assert.Contains(t, msg, "server "+server+": 1 nginx worker(s) still serving requests of the previous configuration after 300ms; "+server+" stays marked down")
	assert.Equal(t, []string{server}, l.downServers(t))
	assert.Equal(t, int64(1), l.backends[server].InFlight(), "the slow request is still in flight")
	cr := check(t, p, "drain", server)
	assert.Equal(t, plugins.CheckNotApplied, cr.State, "old worker still finishing: %s", cr.Detail)

	resp, lines := call(t, p, "drain", args(server, "10s"))
	require.NoError(t, resp.Diagnostics.Err())
	assert.True(t, contains(lines, "already marked down; waiting for 1 old nginx worker"), "%q", lines)
	// The backend answered before the old worker could relay it and exit,
	// so by the time drain returns it holds nothing; the client may take a
	// moment longer to read the answer, which must be a 200.
	assert.Zero(t, l.backends[server].InFlight(), "drain returned while the slow request was in flight")
	select {
	case code := <-done:
		assert.Equal(t, http.StatusOK, code)
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never finished")
	}
}

// TestBadInputChangesNothing: each mistake is a one-line error naming the
// thing, and the upstream file and nginx are as they were.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	text := l.upstream(t)
	master := l.inst.MasterPID()
	workers := nginxctl.Workers(master)
	unchanged := func(t *testing.T) {
		t.Helper()
		assert.Equal(t, text, l.upstream(t), "the upstream file is as it was")
		assert.Equal(t, master, l.inst.MasterPID())
		assert.Equal(t, workers, nginxctl.Workers(master), "nginx was not reloaded")
		entries, err := os.ReadDir(l.inst.Dir)
		require.NoError(t, err)
		for _, e := range entries {
			assert.NotContains(t, e.Name(), "upshift", "no temporary file left")
		}
	}
	for name, tc := range map[string]struct {
		change    map[string]cty.Value
		server    string
		attr      string
		says      string
		enableToo bool // enable of a server in rotation reloads nothing, so only some mistakes show
	}{
		"unknown server": {nil, "node-9", "server", `no server named "node-9" in upstream app (servers: node-1, node-2, node-3)`, true},
		"wrong pid file": {map[string]cty.Value{"pid_file": cty.StringVal("/nonexistent/nginx.pid")}, "node-1", "",
			"nginx is not running: pid file /nonexistent/nginx.pid: no such file or directory", false},
		"pid file of another process": {map[string]cty.Value{"pid_file": cty.StringVal(writePidFile(t, os.Getpid()))}, "node-1", "",
			"is not a live nginx master process", false},
		"missing upstream file": {map[string]cty.Value{"upstream_file": cty.StringVal("/nonexistent/upstream.conf")}, "node-1", "",
			"upstream file /nonexistent/upstream.conf: no such file or directory", true},
		"unknown upstream": {map[string]cty.Value{"upstream": cty.StringVal("api")}, "node-1", "", "has no upstream api (it has: app)", true},
		"server not in the file": {map[string]cty.Value{"servers": cty.MapVal(map[string]cty.Value{
			"node-1": cty.StringVal("127.0.0.1:1"), "node-2": cty.StringVal(l.backends["node-2"].Addr)}),
			"health_urls": cty.NullVal(cty.Map(cty.String))}, "node-1", "",
			"server node-1 (127.0.0.1:1) is not in upstream app of " + l.inst.Upstream, true},
		"wrong nginx_conf": {map[string]cty.Value{"nginx_conf": cty.StringVal("/nonexistent/nginx.conf")}, "node-1", "",
			"nginx -t -c /nonexistent/nginx.conf failed: [emerg] open() \"/nonexistent/nginx.conf\" failed (2: No such file or directory)", false},
	} {
		t.Run(name, func(t *testing.T) {
			p := l.provider(t, tc.change)
			actions := []string{"drain"}
			if tc.enableToo {
				actions = append(actions, "enable")
			}
			for _, action := range actions {
				resp, _ := call(t, p, action, args(tc.server, "2s"))
				msg := oneLineErr(t, resp.Diagnostics)
				assert.Contains(t, msg, tc.says, action)
				if tc.attr != "" {
					assert.Equal(t, tc.attr, resp.Diagnostics[0].Attribute)
				}
				unchanged(t)
			}
		})
	}
	t.Run("enable of a drained server", func(t *testing.T) {
		// enable of a drained server does reload, so it sees these.
		good := l.provider(t, nil)
		resp, _ := call(t, good, "drain", args("node-1", "5s"))
		require.NoError(t, resp.Diagnostics.Err())
		drained := l.upstream(t)
		for cfg, says := range map[string]string{
			"nginx_conf": "nginx -t -c /nonexistent/x failed",
			"pid_file":   "nginx is not running: pid file /nonexistent/x: no such file or directory",
		} {
			bad := l.provider(t, map[string]cty.Value{cfg: cty.StringVal("/nonexistent/x")})
			resp, _ = call(t, bad, "enable", args("node-1", "2s"))
			assert.Contains(t, oneLineErr(t, resp.Diagnostics), "enabling node-1: "+says)
			assert.Equal(t, drained, l.upstream(t))
		}
		resp, _ = call(t, good, "enable", args("node-1", "5s"))
		require.NoError(t, resp.Diagnostics.Err())
		text = l.upstream(t)
		workers = nginxctl.Workers(master)
	})
}

// TestBrokenConfigChangesNothing: when `nginx -t` fails (here the main
// configuration was broken by someone else), the upstream file is put
// back, nginx is not reloaded and keeps serving every server.
func TestBrokenConfigChangesNothing(t *testing.T) {
	t.Parallel()
	l := startLab(t)
	p := l.provider(t, nil)
	text := l.upstream(t)
	master := l.inst.MasterPID()
	workers := nginxctl.Workers(master)
	conf, err := os.ReadFile(l.inst.Conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(l.inst.Conf, append(conf, "\nthis is not nginx;\n"...), 0o644))

	resp, _ := call(t, p, "drain", args("node-1", "5s"))
	msg := oneLineErr(t, resp.Diagnostics)
	assert.Contains(t, msg, "draining node-1: nginx -t -c "+l.inst.Conf+` failed: [emerg] unknown directive "this"`)
	assert.Equal(t, text, l.upstream(t))
	assert.Equal(t, workers, nginxctl.Workers(master), "not reloaded")
	before := l.hits()
	l.fastGets(t, 30)
	for n, h := range l.hits() {
		assert.Greater(t, h, before[n], "%s still takes traffic", n)
	}
	require.NoError(t, os.WriteFile(l.inst.Conf, conf, 0o644))
	resp, _ = call(t, p, "drain", args("node-1", "5s"))
	require.NoError(t, resp.Diagnostics.Err(), "fixed, the same drain works")
}

func writePidFile(t *testing.T, pid int) string {
	path := t.TempDir() + "/other.pid"
	require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644))
	return path
}
