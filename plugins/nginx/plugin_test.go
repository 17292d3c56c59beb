package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxd"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// backend is a small HTTP server on loopback that counts its requests and
// has a slow endpoint, to keep a request in flight.
type backend struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		b.hits.Add(1)
		if r.URL.Path == "/slow" {
			time.Sleep(800 * time.Millisecond)
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func setup(t *testing.T) (plugins.Provider, *nginxd.Instance, []*backend) {
	if _, err := nginxd.Binary(""); err != nil {
		t.Fatalf("nginx is not installed: run .ci/setup: %v", err)
	}
	bs := []*backend{newBackend(t), newBackend(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	ng, err := nginxd.Start(context.Background(), t.TempDir(), addr, "app", []nginxd.Server{{Name: "s1", Addr: bs[0].addr()}, {Name: "s2", Addr: bs[1].addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ng.Stop()) })
	p := sdktest.Provider(t, newPlugin())
	cfg := cty.ObjectVal(map[string]cty.Value{
		"nginx_conf": cty.StringVal(ng.Conf), "upstream_file": cty.StringVal(ng.Upstream), "upstream": cty.StringVal("app"),
		"pid_file": cty.StringVal(ng.PidFile), "nginx_binary": cty.NullVal(cty.String),
		"health_urls": cty.MapVal(map[string]cty.Value{"s1": cty.StringVal(bs[0].srv.URL + "/healthz"), "s2": cty.StringVal(bs[1].srv.URL + "/healthz")}),
	})
	require.False(t, p.Configure(context.Background(), plugins.ConfigureRequest{Config: cfg}).HasErrors())
	return p, ng, bs
}

func invoke(p plugins.Provider, action string, args map[string]cty.Value) plugins.InvokeResponse {
	return p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
}

func drainArgs(server string) map[string]cty.Value {
	return map[string]cty.Value{"server": cty.StringVal(server), "timeout": cty.StringVal("10s"), "min_in_service": cty.NullVal(cty.Number)}
}

func TestDrainWaitsForInFlightRequestsThenNoTraffic(t *testing.T) {
	p, ng, bs := setup(t)
	url := "http://" + ng.Addr
	// Requests in flight on both servers (round robin).
	results := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() {
			r, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(url + "/slow")
			if err != nil {
				results <- 0
				return
			}
			r.Body.Close()
			results <- r.StatusCode
		}()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	r := invoke(p, "drain", drainArgs("s1"))
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "drain waited for the in-flight request")
	assert.Equal(t, http.StatusOK, <-results)
	assert.Equal(t, http.StatusOK, <-results)

	before := bs[0].hits.Load()
	for i := 0; i < 10; i++ {
		resp, err := http.Get(url + "/")
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Equal(t, before, bs[0].hits.Load(), "a drained server gets no traffic")

	chk := p.Check(context.Background(), plugins.InvokeRequest{Action: "drain", Args: cty.ObjectVal(drainArgs("s1"))})
	assert.Equal(t, plugins.CheckApplied, chk.State)
	// The last server in service is not drained.
	r = invoke(p, "drain", drainArgs("s2"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "min_in_service", r.Diagnostics[0].Attribute)

	r = invoke(p, "enable", map[string]cty.Value{"server": cty.StringVal("s1"), "timeout": cty.StringVal("10s")})
	require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
	for i := 0; i < 10; i++ {
		resp, err := http.Get(url + "/")
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Greater(t, bs[0].hits.Load(), before, "enabled again, it takes traffic")

	st := invoke(p, "status", map[string]cty.Value{})
	require.False(t, st.Diagnostics.HasErrors())
	assert.Equal(t, 2, st.Result.GetAttr("servers").LengthInt())
}

func TestBadInputChangesNothing(t *testing.T) {
	p, ng, _ := setup(t)
	r := invoke(p, "drain", drainArgs("nope"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Equal(t, "server", r.Diagnostics[0].Attribute)
	assert.Contains(t, r.Diagnostics.Err().Error(), `no server named "nope"`)

	// A main config that no longer passes nginx -t: the drain is refused
	// and the upstream file is as it was.
	before, err := os.ReadFile(ng.Upstream)
	require.NoError(t, err)
	conf, err := os.ReadFile(ng.Conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ng.Conf, append(conf, []byte("\nthis is not nginx;\n")...), 0o644))
	r = invoke(p, "drain", drainArgs("s1"))
	require.True(t, r.Diagnostics.HasErrors())
	assert.Contains(t, r.Diagnostics.Err().Error(), "nginx -t")
	after, _ := os.ReadFile(ng.Upstream)
	assert.Equal(t, string(before), string(after))
	require.NoError(t, os.WriteFile(ng.Conf, conf, 0o644))
}
