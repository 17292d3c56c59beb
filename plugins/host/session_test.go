package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/schema"
)

// sessionPlaybook makes a playbook folder whose lock file pins two plugins,
// testkit and kit2, each its own copy of the testkit binary in a trusted
// plugin folder ($UPSHIFT_PLUGIN_PATH), so that every process can be traced
// to its plugin by its command line. It returns the folder and each
// plugin's binary.
func sessionPlaybook(t *testing.T) (dir string, bins map[string]string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	plugins := t.TempDir()
	t.Setenv(host.PluginPathEnv, plugins)
	lf := &host.LockFile{}
	bins = map[string]string{}
	for _, name := range []string{"testkit", "kit2"} {
		path := filepath.Join(plugins, host.BinaryName(name))
		require.NoError(t, os.WriteFile(path, src, 0o755))
		lf.Set(&host.LockedPlugin{Name: name, Version: "0.1.0", SHA256: testkitSum})
		bins[name] = path
	}
	require.NoError(t, lf.WriteFile(filepath.Join(dir, host.LockFileName)))
	return dir, bins
}

// threeResources: testkit serves two node pools, kit2 one.
func threeResources() []host.Requirement {
	return []host.Requirement{
		{Name: "testkit", Resources: []string{"node_pool.b", "node_pool.a"}},
		{Name: "kit2", Version: "~> 0.1", Resources: []string{"node_pool.c"}},
	}
}

// processesOf returns the pids of the processes started from the plugin
// binary at path (argv[0]: the process runs a private copy of it), from
// /proc.
func processesOf(t *testing.T, path string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if argv0(pid) == path {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// argv0 is the first word of a process's command line, "" when it is gone.
func argv0(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	first, _, _ := bytes.Cut(b, []byte{0})
	return string(first)
}

func openSession(t *testing.T, opts host.SessionOptions) (*host.Session, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	s, err := host.OpenSession(context.Background(), opts)
	if s != nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

func kitNodes(names ...string) cty.Value {
	var vs []cty.Value
	for _, n := range names {
		vs = append(vs, cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(n)}))
	}
	return cty.TupleVal(vs)
}

func TestSessionStartsOneInstancePerResource(t *testing.T) {
	dir, bins := sessionPlaybook(t)
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources(), RequireLock: true, Parallelism: 2})
	require.NoError(t, err)
	require.True(t, s.Pinned())

	rs := s.Resources()
	require.Len(t, rs, 3)
	var addrs []string
	pids := map[int]bool{}
	for _, r := range rs {
		addrs = append(addrs, r.Address)
		assert.Equal(t, testkitSum, r.SHA256)
		require.NotNil(t, r.Instance)
		pids[r.Instance.Pid()] = true
		assert.Equal(t, bins[r.Plugin], argv0(r.Instance.Pid()), "%s runs its own plugin's binary", r.Address)
	}
	assert.Equal(t, []string{"node_pool.a", "node_pool.b", "node_pool.c"}, addrs)
	assert.Equal(t, "testkit", rs[0].Plugin)
	assert.Equal(t, "kit2", rs[2].Plugin)
	assert.Len(t, pids, 3, "one process per resource")
	assert.Len(t, processesOf(t, bins["testkit"]), 2, "testkit started once for each of its two resources, no more")
	assert.Len(t, processesOf(t, bins["kit2"]), 1)

	providers := s.Providers()
	require.Len(t, providers, 3)
	assert.Same(t, rs[1].Instance, providers["node_pool.b"])

	sch, err := s.Schema("kit2", schema.KindNodePool)
	require.NoError(t, err)
	require.NotNil(t, sch.Config, "the plugin's own schema, not the contract")
	assert.NotNil(t, sch.Config.Attribute("state_dir"))
	_, err = s.Schema("other", schema.KindNodePool)
	assert.ErrorContains(t, err, "plugin other is not pinned in upshift.lock.hcl")

	// Configured with sensitive values: the marks are removed, the values
	// reach the plugin.
	state := t.TempDir()
	cfg := cty.ObjectVal(map[string]cty.Value{"state_dir": cty.StringVal(state).Mark("sensitive")})
	require.NoError(t, s.Configure(context.Background(), "node_pool.a", plugins.ConfigureRequest{Config: cfg, Nodes: kitNodes("n1").Mark("sensitive")}))
	resp := providers["node_pool.a"].Invoke(context.Background(), plugins.InvokeRequest{Action: "record", Args: args("key", "k")})
	require.False(t, resp.Diagnostics.HasErrors(), "%v", resp.Diagnostics.Err())
	_, err = os.Stat(filepath.Join(state, "record.log"))
	assert.NoError(t, err, "the plugin got its state_dir")

	require.NoError(t, s.Close())
	for name, bin := range bins {
		assert.Empty(t, processesOf(t, bin), "%s processes left after Close", name)
	}
	for pid := range pids {
		assert.True(t, processGone(pid), "pid %d", pid)
	}
	require.NoError(t, s.Close(), "Close twice is harmless")
}

func TestSessionChecksumMismatchLeavesNoProcess(t *testing.T) {
	dir, bins := sessionPlaybook(t)
	b, err := os.ReadFile(bins["kit2"])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bins["kit2"], append(b, 0), 0o755))

	// One at a time: node_pool.a and .b (testkit) are running when
	// node_pool.c (kit2) fails, and must be ended.
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources(), RequireLock: true, Parallelism: 1})
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Equal(t, "plugin kit2: binary "+bins["kit2"]+" does not match the checksum in upshift.lock.hcl; run `upshift init` if you upgraded it on purpose", err.Error())
	for name, bin := range bins {
		assert.Empty(t, processesOf(t, bin), "%s processes left after a failed start", name)
	}
}

func TestSessionVersionConstraint(t *testing.T) {
	dir, bins := sessionPlaybook(t)
	reqs := threeResources()
	reqs[1].Version = ">= 1.0"
	_, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs, RequireLock: true, Parallelism: 1})
	require.Error(t, err)
	assert.Equal(t, "plugin kit2 is version 0.1.0, but the playbook requires >= 1.0; change the plugin block or install a matching plugin, then run `upshift init`", err.Error())
	for name, bin := range bins {
		assert.Empty(t, processesOf(t, bin), "%s processes left after a failed start", name)
	}
}

func TestSessionConfigureErrorNamesTheResource(t *testing.T) {
	dir, _ := sessionPlaybook(t)
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources(), RequireLock: true})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Configure(ctx, "node_pool.a", plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: kitNodes("a")}))
	err = s.Configure(ctx, "node_pool.c", plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: kitNodes("a", "a")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "configuring node_pool.c (plugin kit2): ")
	assert.Contains(t, err.Error(), `node "a" appears twice`)
	err = s.Configure(ctx, "node_pool.z", plugins.ConfigureRequest{Config: cty.EmptyObjectVal, Nodes: kitNodes("a")})
	assert.EqualError(t, err, "configuring node_pool.z: no plugin was started for it")
}

func TestSessionPluginMissingFromLockStartsNothing(t *testing.T) {
	dir, bins := sessionPlaybook(t)
	reqs := append(threeResources(), host.Requirement{Name: "haproxy", Resources: []string{"load_balancer.front"}})
	_, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs, RequireLock: true})
	assert.EqualError(t, err, "plugin haproxy is not in upshift.lock.hcl; run `upshift init`")
	for name, bin := range bins {
		assert.Empty(t, processesOf(t, bin), "%s started although the session could not", name)
	}

	// validate, plan, graph: the pinned plugins start, a known one the lock
	// file leaves out is checked against its kind's contract.
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs})
	require.NoError(t, err)
	assert.Len(t, s.Resources(), 3)
	sch, err := s.Schema("haproxy", schema.KindLoadBalancer)
	require.NoError(t, err)
	assert.Equal(t, schema.ContractPlugin(schema.KindLoadBalancer), sch)
}

func TestSessionWithoutLockFile(t *testing.T) {
	dir := t.TempDir()
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources()})
	require.NoError(t, err)
	assert.False(t, s.Pinned())
	assert.Empty(t, s.Resources())
	assert.Empty(t, s.Providers())
	sch, err := s.Schema("testkit", schema.KindDatabase)
	require.NoError(t, err)
	assert.Equal(t, schema.ContractPlugin(schema.KindDatabase), sch, "the kind's contract")
	require.NoError(t, s.Close())

	// A run needs the plugins pinned.
	_, err = openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources(), RequireLock: true})
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "; run `upshift init "+dir+"` to pin the plugins this playbook uses")

	// A lock file that cannot be read is an error even when not required.
	require.NoError(t, os.WriteFile(filepath.Join(dir, host.LockFileName), []byte("plugin {"), 0o644))
	_, err = openSession(t, host.SessionOptions{Dir: dir, Requirements: threeResources()})
	assert.ErrorContains(t, err, host.LockFileName)
}

// TestSessionNeverRunsPlaybookBinaries: a playbook folder that ships its own
// binaries (in .upshift/plugins, ./bin, a folder put on PATH) and a lock
// file pinning them by path and checksum gets none of them run, by any
// session: validate, plan, graph or run. Without trusted plugins a pinned
// plugin is an error saying where upshift looked.
func TestSessionNeverRunsPlaybookBinaries(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(host.PluginPathEnv, t.TempDir()) // empty
	marker := filepath.Join(t.TempDir(), "ran")
	evil := []byte("#!/bin/sh\necho ran >> '" + marker + "'\n")
	sum := sha256.Sum256(evil)
	lf := &host.LockFile{}
	for _, d := range []string{".upshift/plugins", "bin", "path"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, d, host.BinaryName("evil")), evil, 0o755))
	}
	t.Setenv("PATH", filepath.Join(dir, "path")+":"+os.Getenv("PATH"))
	t.Chdir(dir)
	reqs := []host.Requirement{{Name: "evil", Resources: []string{"node_pool.a"}}}

	// No lock file: nothing starts, and an unknown plugin is reported.
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs})
	require.NoError(t, err)
	_, err = s.Schema("evil", schema.KindNodePool)
	assert.ErrorContains(t, err, `unknown plugin "evil"`)

	// A lock file that pins the shipped binary by path and checksum.
	lock := "plugin \"evil\" {\n  version = \"0.1.0\"\n  path = \".upshift/plugins/upshift-plugin-evil\"\n  sha256 = \"" + hex.EncodeToString(sum[:]) + "\"\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, host.LockFileName), []byte(lock), 0o644))
	for _, require := range []bool{false, true} {
		logs := &syncBuffer{}
		_, err = openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs, RequireLock: require,
			Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
		assert.ErrorContains(t, err, "plugin evil: no upshift-plugin-evil found; looked in:")
		assert.NotContains(t, err.Error(), dir, "the playbook folder is not a place to look")
		assert.Contains(t, logs.String(), "gives a path for evil: paths in a lock file are ignored")
	}
	lf.Set(&host.LockedPlugin{Name: "evil", Version: "0.1.0", SHA256: hex.EncodeToString(sum[:])})
	require.NoError(t, lf.WriteFile(filepath.Join(dir, host.LockFileName)))
	_, err = openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs})
	assert.ErrorContains(t, err, "no upshift-plugin-evil found")
	assert.NoFileExists(t, marker, "a binary of the playbook folder ran")
}

// TestSessionUnknownPlugin: before init, a plugin no trusted folder has,
// that the lock file does not name and upshift does not ship, is an error
// from Schema (a diagnostic at the resource's plugin attribute) with the
// closest known name; known ones get their kind's contract.
func TestSessionUnknownPlugin(t *testing.T) {
	dir := t.TempDir()
	plugins := t.TempDir()
	t.Setenv(host.PluginPathEnv, plugins)
	require.NoError(t, os.WriteFile(filepath.Join(plugins, host.BinaryName("fancylb")), []byte("#!/bin/sh\nexit 1\n"), 0o755))
	reqs := []host.Requirement{
		{Name: "hapoxy", Resources: []string{"load_balancer.a"}},
		{Name: "fancyl", Resources: []string{"load_balancer.b"}},
		{Name: "haproxy", Resources: []string{"load_balancer.c"}},
		{Name: "fancylb", Resources: []string{"load_balancer.d"}},
		{Name: "oracle", Resources: []string{"database.e"}},
		{Name: "named", Source: "./tools/x", Resources: []string{"database.f"}},
	}
	s, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs})
	require.NoError(t, err)
	_, err = s.Schema("hapoxy", schema.KindLoadBalancer)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown plugin "hapoxy": no trusted plugin folder has upshift-plugin-hapoxy and upshift.lock.hcl does not name it (did you mean "haproxy"?)`)
	assert.Contains(t, err.Error(), plugins, "says where plugins are found")
	_, err = s.Schema("fancyl", schema.KindLoadBalancer)
	assert.ErrorContains(t, err, `(did you mean "fancylb"?)`, "an installed plugin is suggested")
	_, err = s.Schema("oracle", schema.KindDatabase)
	assert.ErrorContains(t, err, `unknown plugin "oracle"`)
	assert.NotContains(t, err.Error(), "did you mean")
	_, err = s.Schema("named", schema.KindDatabase)
	assert.ErrorContains(t, err, `source "./tools/x" is a path`)
	for _, known := range []string{"haproxy", "fancylb"} {
		sch, err := s.Schema(known, schema.KindLoadBalancer)
		require.NoError(t, err, known)
		assert.Equal(t, schema.ContractPlugin(schema.KindLoadBalancer), sch)
	}
	assert.Empty(t, s.Resources(), "nothing started")

	// A plugin the lock file names is known even where it is not installed.
	lf := &host.LockFile{}
	lf.Set(&host.LockedPlugin{Name: "hapoxy", Version: "0.1.0", SHA256: testkitSum})
	require.NoError(t, lf.WriteFile(filepath.Join(dir, host.LockFileName)))
	s, err = openSession(t, host.SessionOptions{Dir: dir, Requirements: []host.Requirement{{Name: "hapoxx", Resources: []string{"load_balancer.a"}}}})
	require.NoError(t, err)
	_, err = s.Schema("hapoxx", schema.KindLoadBalancer)
	assert.ErrorContains(t, err, `(did you mean "hapoxy"?)`)
}
