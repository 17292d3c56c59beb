package host_test

import (
	"context"
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
// testkit and kit2, each its own copy of the testkit binary, so that every
// process can be traced to its plugin by its executable. It returns the
// folder and each plugin's binary.
func sessionPlaybook(t *testing.T) (dir string, bins map[string]string) {
	t.Helper()
	dir = t.TempDir()
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "plugins"), 0o755))
	lf := &host.LockFile{}
	bins = map[string]string{}
	for _, name := range []string{"testkit", "kit2"} {
		path := filepath.Join(dir, "plugins", host.BinaryName(name))
		require.NoError(t, os.WriteFile(path, src, 0o755))
		lf.Set(&host.LockedPlugin{Name: name, Version: "0.1.0", Path: filepath.Join("plugins", host.BinaryName(name)), SHA256: testkitSum})
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

// processesOf returns the pids of the processes running the executable at
// path, from /proc.
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
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
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
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(r.Instance.Pid()), "exe"))
		require.NoError(t, err)
		assert.Equal(t, bins[r.Plugin], exe, "%s runs its own plugin's binary", r.Address)
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
	_, err := openSession(t, host.SessionOptions{Dir: dir, Requirements: reqs})
	assert.EqualError(t, err, "plugin haproxy is not in upshift.lock.hcl; run `upshift init`")
	for name, bin := range bins {
		assert.Empty(t, processesOf(t, bin), "%s started although the session could not", name)
	}
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
