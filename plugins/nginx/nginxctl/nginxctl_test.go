package nginxctl

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
)

const sample = `# operator's comment
upstream other { server 10.0.0.9:80; }
upstream app {
    zone app 64k;
    server 127.0.0.1:18081 max_fails=3 fail_timeout=5s; # node-1
	server 127.0.0.1:18082 down;
    server unix:/run/app.sock weight=2 down   ;  # node-3
    keepalive 8;
}
`

func TestParseUpstreamEditsOnlyDown(t *testing.T) {
	u, err := ParseUpstream("u.conf", []byte(sample), "app")
	require.NoError(t, err)
	assert.Equal(t, []Server{
		{Name: "node-1", Addr: "127.0.0.1:18081"},
		{Addr: "127.0.0.1:18082", Down: true},
		{Name: "node-3", Addr: "unix:/run/app.sock", Down: true},
	}, u.Servers)
	assert.False(t, u.SetDown(1, true), "already down")
	assert.Equal(t, sample, string(u.Bytes()), "no change, same bytes")
	assert.True(t, u.SetDown(0, true))
	assert.True(t, u.SetDown(1, false))
	want := strings.Replace(sample, "max_fails=3 fail_timeout=5s;", "max_fails=3 fail_timeout=5s down;", 1)
	want = strings.Replace(want, "\tserver 127.0.0.1:18082 down;", "\tserver 127.0.0.1:18082;", 1)
	assert.Equal(t, want, string(u.Bytes()))

	again, err := ParseUpstream("u.conf", u.Bytes(), "app")
	require.NoError(t, err)
	assert.True(t, again.Servers[0].Down)
	assert.False(t, again.Servers[1].Down)
	assert.Equal(t, 2, again.Index("unix:/run/app.sock"))
	assert.Equal(t, -1, again.Index("127.0.0.1:1"))
}

func TestParseUpstreamErrors(t *testing.T) {
	for name, tc := range map[string]struct{ text, says string }{
		"no such block":   {"upstream api {\n server 127.0.0.1:1;\n}\n", "u.conf has no upstream app (it has: api)"},
		"no block at all": {"# empty\n", "u.conf has no upstream app"},
		"two on a line":   {"upstream app {\n server 127.0.0.1:1; server 127.0.0.1:2;\n}\n", "u.conf line 2: cannot read this server line"},
		"not closed":      {"upstream app {\n server 127.0.0.1:1;\n", "upstream app is not closed"},
		"no servers":      {"upstream app {\n}\n", "upstream app has no server lines"},
		"listed twice":    {"upstream app {\n server 127.0.0.1:1;\n server 127.0.0.1:1 down;\n}\n", "server 127.0.0.1:1 is listed twice"},
		"block twice":     {"upstream app {\n server 127.0.0.1:1;\n}\nupstream app {\n server 127.0.0.1:2;\n}\n", "upstream app is defined twice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUpstream("u.conf", []byte(tc.text), "app")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.says)
		})
	}
}

func TestRenderThenReadUpstream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "upstream.conf")
	servers := []Server{{Name: "node-1", Addr: "127.0.0.1:1"}, {Name: "node-2", Addr: "127.0.0.1:2", Down: true}}
	require.NoError(t, fsutil.WriteFile(path, []byte(RenderUpstream("app", servers)), 0o644))
	got, err := ReadUpstream(path)
	require.NoError(t, err)
	assert.Equal(t, servers, got)
	none := filepath.Join(t.TempDir(), "none.conf")
	_, err = ReadUpstream(none)
	assert.EqualError(t, err, "upstream file "+none+": no such file or directory")
}

func TestOneLine(t *testing.T) {
	out := "nginx: [emerg] unknown directive \"x\" in /e/nginx.conf:3\nnginx: configuration file /e/nginx.conf test failed\n"
	assert.Equal(t, `[emerg] unknown directive "x" in /e/nginx.conf:3`, OneLine(out))
	out = "2026/11/25 08:22:59 [emerg] 29803#29803: open() \"/x\" failed (2: No such file or directory)\n"
	assert.Equal(t, `[emerg] open() "/x" failed (2: No such file or directory)`, OneLine(out))
	assert.Equal(t, "something else", OneLine("nginx: something else\nmore"))
}

// TestStartReloadStop runs a real nginx: it proxies, a reload waits for
// the old workers (one busy with a slow request), Stop leaves no process.
// TestMasterRefusesStrangers: a pid file naming a process that is not an
// nginx master is refused, so a stale pid file cannot make upshift signal
// an unrelated process.
func TestMasterRefusesStrangers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nginx.pid")
	require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644))
	_, err := Ctl{PidFile: path}.Master()
	assert.EqualError(t, err, "nginx is not running: pid "+strconv.Itoa(os.Getpid())+" from "+path+" is not a live nginx master process")
	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o644))
	_, err = Ctl{PidFile: path}.Master()
	assert.EqualError(t, err, "pid file "+path+" does not hold a pid")
	assert.Zero(t, MasterPID(path))
	_, err = Ctl{PidFile: "/nonexistent/nginx.pid"}.Reload(context.Background(), time.Second)
	assert.EqualError(t, err, "nginx is not running: pid file /nonexistent/nginx.pid: no such file or directory")
}

func TestTestNamesTheConfig(t *testing.T) {
	bin, err := Binary("")
	if err != nil {
		t.Fatal("nginx is not installed")
	}
	conf := filepath.Join(t.TempDir(), "nginx.conf")
	require.NoError(t, os.WriteFile(conf, []byte("events {}\nhttp { bogus on; }\n"), 0o644))
	err = Ctl{Binary: bin, Conf: conf}.Test(context.Background())
	require.Error(t, err)
	assert.Equal(t, "nginx -t -c "+conf+` failed: [emerg] unknown directive "bogus" in `+conf+":2", err.Error())
	_, err = Binary("/nonexistent/nginx")
	assert.EqualError(t, err, "nginx binary /nonexistent/nginx: no such file or directory")
}

func TestStickyUpstreams(t *testing.T) {
	servers := []Server{{Name: "node-1", Addr: "127.0.0.1:1"}, {Name: "node-2", Addr: "127.0.0.1:2"}}
	for balance, want := range map[string]bool{
		"":                             false,
		"least_conn":                   false,
		"hash $request_uri consistent": false,
		"hash $cookie_platform_session consistent": true,
		"hash $cookie_sid":                         true,
		"ip_hash":                                  true,
	} {
		u, err := ParseUpstream("u.conf", []byte(RenderUpstreamBalanced("app", servers, balance)), "app")
		require.NoError(t, err, balance)
		assert.Equal(t, balance, u.Balance)
		assert.Equal(t, []Server{{Name: "node-1", Addr: "127.0.0.1:1"}, {Name: "node-2", Addr: "127.0.0.1:2"}}, u.Servers)
		on, how := u.Sticky()
		assert.Equal(t, want, on, balance)
		assert.NotEmpty(t, how)
	}
	u, err := ParseUpstream("u.conf", []byte(sample), "app")
	require.NoError(t, err)
	assert.Empty(t, u.Balance, "zone and keepalive are not balancing")
	on, how := u.Sticky()
	assert.False(t, on)
	assert.Equal(t, "round robin", how)
}
