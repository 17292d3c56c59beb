package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// launchTestkit starts the testkit binary, configured with a fresh state_dir
// and nodes a and b, and closes it at the end of the test.
func launchTestkit(t testing.TB, logger hclog.Logger) (*host.Process, string) {
	t.Helper()
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: testkitPath, SHA256: testkitSum, Logger: logger})
	require.NoError(t, err)
	inst := p.(*host.Process)
	t.Cleanup(func() { _ = inst.Close() })
	dir := t.TempDir()
	d := inst.Configure(context.Background(), plugins.ConfigureRequest{
		Config: cty.ObjectVal(map[string]cty.Value{"state_dir": cty.StringVal(dir)}),
		Nodes: cty.TupleVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("a"), "address": cty.StringVal("127.0.0.1:8001")}),
			cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("b"), "address": cty.StringVal("127.0.0.1:8002")}),
		}),
	})
	require.False(t, d.HasErrors(), "%v", d.Err())
	return inst, dir
}

func args(kv ...string) cty.Value {
	m := map[string]cty.Value{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = cty.StringVal(kv[i+1])
	}
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

// processGone reports whether pid no longer exists (signal 0 probes it).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestLaunchAndCall(t *testing.T) {
	logs := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	inst, dir := launchTestkit(t, logger)
	ctx := context.Background()

	assert.Equal(t, "testkit", inst.Name())
	assert.Equal(t, "0.1.0", inst.Version())
	assert.Equal(t, schema.KindNodePool, inst.Kind())
	assert.Greater(t, inst.Pid(), 0)
	sp, err := inst.Schema(ctx)
	require.NoError(t, err)
	require.NoError(t, sp.Validate())
	assert.True(t, sp.Action("echo").Args.Attribute("secret").Sensitive)

	resp := inst.Invoke(ctx, plugins.InvokeRequest{Action: "noop", Args: cty.EmptyObjectVal})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.True(t, resp.Result.GetAttr("ok").True())

	var lines []string
	resp = inst.Invoke(ctx, plugins.InvokeRequest{Action: "sleep", Args: args("duration", "10ms"), Progress: func(l string) { lines = append(lines, l) }})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, []string{"sleeping 10ms"}, lines)

	resp = inst.Invoke(ctx, plugins.InvokeRequest{Action: "echo", Args: args("value", "v", "secret", "hunter2")})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.Equal(t, "hunter2", resp.Result.GetAttr("secret").AsString())

	// Diagnostics cross the wire intact.
	resp = inst.Invoke(ctx, plugins.InvokeRequest{Action: "fail", Args: args("message", "too big", "attribute", "message")})
	require.Len(t, resp.Diagnostics, 1)
	assert.Equal(t, plugins.Diagnostic{Severity: plugins.Error, Summary: `fail: invalid argument "message"`, Detail: "too big", Attribute: "message"}, resp.Diagnostics[0])
	resp = inst.Invoke(ctx, plugins.InvokeRequest{Action: "start", Args: args("node", "zz")})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Equal(t, "node", resp.Diagnostics[0].Attribute)

	// record + Check, as the runner's resume uses them.
	cr := inst.Check(ctx, plugins.InvokeRequest{Action: "record", Args: args("key", "k")})
	assert.Equal(t, plugins.CheckNotApplied, cr.State)
	resp = inst.Invoke(ctx, plugins.InvokeRequest{Action: "record", Args: args("key", "k")})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	cr = inst.Check(ctx, plugins.InvokeRequest{Action: "record", Args: args("key", "k")})
	assert.Equal(t, plugins.CheckApplied, cr.State)
	assert.True(t, cr.Result.Equals(resp.Result).True())
	b, err := os.ReadFile(filepath.Join(dir, "record.log"))
	require.NoError(t, err)
	assert.Equal(t, "k 1\n", string(b))

	// The plugin's own log lines reach the host's logger; the secret does not.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "recorded") }, 2*time.Second, 10*time.Millisecond)
	assert.Contains(t, logs.String(), "testkit")
	assert.NotContains(t, logs.String(), "hunter2")
}

// TestPluginEnvironmentIsMinimal: a plugin process inherits only the
// allow-listed variables and go-plugin's own; UPSHIFT_VAR_* (variables of
// the playbook, secrets among them) and anything else stay out.
func TestPluginEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("UPSHIFT_VAR_secret", "hunter2")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "UTC")
	inst, _ := launchTestkit(t, nil)
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(inst.Pid()), "environ"))
	require.NoError(t, err)
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimRight(string(b), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	assert.NotContains(t, string(b), "hunter2")
	assert.NotContains(t, env, "UPSHIFT_VAR_secret")
	assert.NotContains(t, env, "AWS_SECRET_ACCESS_KEY")
	assert.Equal(t, os.Getenv("PATH"), env["PATH"])
	assert.Equal(t, os.Getenv("HOME"), env["HOME"])
	assert.Equal(t, "C", env["LC_TIME"])
	assert.Equal(t, "UTC", env["TZ"])
	assert.Equal(t, sdk.Handshake.MagicCookieValue, env[sdk.Handshake.MagicCookieKey], "go-plugin's own variables are there")
	assert.Contains(t, env, "PLUGIN_CLIENT_CERT")
	for k := range env {
		allowed := strings.HasPrefix(k, "LC_") || strings.HasPrefix(k, "PLUGIN_") || k == sdk.Handshake.MagicCookieKey
		for _, n := range []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SSH_AUTH_SOCK"} {
			allowed = allowed || k == n
		}
		assert.True(t, allowed, "the plugin sees %s", k)
	}
	// The call still works.
	resp := inst.Invoke(context.Background(), plugins.InvokeRequest{Action: "noop", Args: cty.EmptyObjectVal})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
}

func TestPluginEnv(t *testing.T) {
	assert.Equal(t, []string{"PATH=/bin", "LC_ALL=C", "HOME=/root", "SSH_AUTH_SOCK=/s", "TMPDIR=/t", "USER=u", "LANG=C.UTF-8", "TZ=UTC"},
		host.PluginEnv([]string{"PATH=/bin", "UPSHIFT_VAR_db_password=x", "LC_ALL=C", "HOME=/root", "SSH_AUTH_SOCK=/s", "GITHUB_TOKEN=t", "TMPDIR=/t", "USER=u", "LANG=C.UTF-8", "TZ=UTC", "PATHX=1", "junk"}))
}

func TestTamperedBinaryRefused(t *testing.T) {
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), host.BinaryName("testkit"))
	require.NoError(t, os.WriteFile(path, src, 0o755))
	sum, err := host.Checksum(path)
	require.NoError(t, err)
	assert.Equal(t, testkitSum, sum)

	// Change one byte after the checksum was taken.
	src[len(src)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, src, 0o755))

	_, err = host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: path, SHA256: sum, Logger: hclog.NewNullLogger()})
	require.Error(t, err)
	assert.Equal(t, "plugin testkit: binary "+path+" does not match the checksum in upshift.lock.hcl; run `upshift init` if you upgraded it on purpose", err.Error())
}

func TestLaunchRefusesBadSpecs(t *testing.T) {
	ctx := context.Background()
	_, err := host.Launch(ctx, host.LaunchSpec{Name: "testkit", Path: testkitPath, Logger: hclog.NewNullLogger()})
	assert.ErrorContains(t, err, "no valid sha256")
	_, err = host.Launch(ctx, host.LaunchSpec{Name: "testkit", Path: testkitPath, SHA256: "abc", Logger: hclog.NewNullLogger()})
	assert.ErrorContains(t, err, "no valid sha256")
	_, err = host.Launch(ctx, host.LaunchSpec{Name: "testkit", Path: filepath.Join(t.TempDir(), "gone"), SHA256: testkitSum, Logger: hclog.NewNullLogger()})
	assert.ErrorContains(t, err, "no such file")

	// A program that is not an upshift plugin fails at launch, not later.
	script := filepath.Join(t.TempDir(), "upshift-plugin-fake")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755))
	sum, err := host.Checksum(script)
	require.NoError(t, err)
	start := time.Now()
	_, err = host.Launch(ctx, host.LaunchSpec{Name: "fake", Path: script, SHA256: sum, Logger: hclog.NewNullLogger()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plugin fake: starting")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestCrashMidCallIsAnErrorAtOnce(t *testing.T) {
	inst, _ := launchTestkit(t, nil)
	start := time.Now()
	resp := inst.Invoke(context.Background(), plugins.InvokeRequest{Action: "crash", Args: args("after", "20ms")})
	elapsed := time.Since(start)
	t.Logf("crash call failed after %v (20ms of it the crash delay)", elapsed)
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics.Err().Error(), "plugin testkit")
	assert.Contains(t, resp.Diagnostics.Err().Error(), "exited during crash")
	assert.Less(t, elapsed, time.Second, "a crashed plugin must fail the call at once")
	assert.True(t, inst.Exited())

	// Later calls fail at once too.
	start = time.Now()
	resp = inst.Invoke(context.Background(), plugins.InvokeRequest{Action: "noop", Args: cty.EmptyObjectVal})
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Less(t, time.Since(start), time.Second)
}

func TestKilledDuringSleepIsAnErrorAtOnce(t *testing.T) {
	inst, _ := launchTestkit(t, nil)
	started := make(chan struct{}, 1)
	done := make(chan plugins.InvokeResponse, 1)
	go func() {
		done <- inst.Invoke(context.Background(), plugins.InvokeRequest{Action: "sleep", Args: args("duration", "30s"),
			Progress: func(string) { started <- struct{}{} }})
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("sleep did not start")
	}
	killed := time.Now()
	require.NoError(t, syscall.Kill(inst.Pid(), syscall.SIGKILL))
	select {
	case resp := <-done:
		t.Logf("call failed %v after SIGKILL", time.Since(killed))
		assert.Less(t, time.Since(killed), time.Second)
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics.Err().Error(), "exited during sleep")
	case <-time.After(5 * time.Second):
		t.Fatal("the call hangs after the plugin was killed")
	}
}

func TestCancelReachesPlugin(t *testing.T) {
	inst, dir := launchTestkit(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	done := make(chan plugins.InvokeResponse, 1)
	go func() {
		done <- inst.Invoke(ctx, plugins.InvokeRequest{Action: "sleep", Args: args("duration", "30s", "key", "c1"),
			Progress: func(string) { started <- struct{}{} }})
	}()
	<-started
	cancel()
	select {
	case resp := <-done:
		require.True(t, resp.Diagnostics.HasErrors())
		assert.Contains(t, resp.Diagnostics.Err().Error(), "context canceled")
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not end the call")
	}
	// The marker proves the plugin's handler saw its context cancelled.
	marker := filepath.Join(dir, "cancelled-c1")
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 5*time.Second, 10*time.Millisecond)
	// And the plugin is still usable.
	resp := inst.Invoke(context.Background(), plugins.InvokeRequest{Action: "noop", Args: cty.EmptyObjectVal})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	assert.False(t, inst.Exited())
}

func TestNoOrphans(t *testing.T) {
	inst, _ := launchTestkit(t, nil)
	pid := inst.Pid()
	require.False(t, processGone(pid))
	require.NoError(t, inst.Close())
	require.NoError(t, inst.Close(), "Close twice is harmless")
	assert.Eventually(t, func() bool { return processGone(pid) }, 3*time.Second, 10*time.Millisecond)

	// CleanupAll ends every plugin still running, mid-call or not.
	a, _ := launchTestkit(t, nil)
	b, _ := launchTestkit(t, nil)
	go b.Invoke(context.Background(), plugins.InvokeRequest{Action: "sleep", Args: args("duration", "30s")})
	pids := []int{a.Pid(), b.Pid()}
	for _, p := range pids {
		require.False(t, processGone(p))
	}
	host.CleanupAll()
	for _, p := range pids {
		assert.Eventually(t, func() bool { return processGone(p) }, 3*time.Second, 10*time.Millisecond, "pid %d", p)
	}
}

func BenchmarkLaunch(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		p, err := host.Launch(ctx, host.LaunchSpec{Name: "testkit", Path: testkitPath, SHA256: testkitSum, Logger: hclog.NewNullLogger()})
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Close()
	}
}

func BenchmarkInvoke(b *testing.B) {
	inst, _ := launchTestkit(b, nil)
	ctx := context.Background()
	req := plugins.InvokeRequest{Action: "noop", Args: cty.EmptyObjectVal}
	for b.Loop() {
		if resp := inst.Invoke(ctx, req); resp.Diagnostics.HasErrors() {
			b.Fatal(resp.Diagnostics.Err())
		}
	}
}
