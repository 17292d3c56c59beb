package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testCluster(id, socket string) *Cluster {
	return &Cluster{ID: id, Resources: []ClusterResource{
		{Address: "load_balancer.front", Kind: "load_balancer", Plugin: "haproxy", Fields: map[string]string{"config.socket": socket}},
		{Address: "node_pool.cluster", Kind: "node_pool", Plugin: "process", Fields: map[string]string{"nodes.n1": "10.0.0.1:80", "nodes.n2": "10.0.0.2:80"}},
	}}
}

func TestStoreKeepsOneFolderPerCluster(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "state"))
	require.NoError(t, err)
	f := testCluster(strings.Repeat("f", 64), "/run/f.sock")
	g := testCluster(strings.Repeat("a", 64), "/run/g.sock")
	fDir, err := s.Register(f)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(s.Dir(), "clusters", "ffffffffffff"), fDir)
	gDir, err := s.Register(g)
	require.NoError(t, err)
	assert.NotEqual(t, fDir, gDir)
	again, err := s.Register(f)
	require.NoError(t, err)
	assert.Equal(t, fDir, again, "registering again finds the same folder")

	jf, err := OpenWithOptions(fDir, Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, jf.Begin(&Run{ID: "r1", Cluster: f.ID, Steps: map[string]*Step{"step.a": {Address: "step.a", Status: Pending}}}))
	require.NoError(t, jf.Finish(Failed))

	all, err := s.Clusters()
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, f.ID, all[0].Cluster.ID, "the most recently updated first")
	assert.True(t, all[0].Unfinished(), "a failed run is resumed")
	assert.Equal(t, "r1", all[0].Current.ID)
	assert.Nil(t, all[1].Current)
	assert.False(t, all[1].Unfinished())

	assert.Equal(t, []string{
		`load_balancer.front config.socket: "/run/f.sock" in ffffffffffff, "/run/g.sock" in aaaaaaaaaaaa`,
	}, Diff(f, g))
	assert.Equal(t, "load_balancer.front (haproxy), node_pool.cluster (process, 2 nodes)", f.Describe())
}

func TestStoreRefusesAnotherClustersFolder(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	f := testCluster("abcdef123456"+strings.Repeat("0", 52), "/run/f.sock")
	_, err = s.Register(f)
	require.NoError(t, err)
	// Another cluster whose short id collides.
	g := testCluster("abcdef123456"+strings.Repeat("1", 52), "/run/g.sock")
	_, err = s.Register(g)
	var mismatch *MismatchError
	require.True(t, errors.As(err, &mismatch), "%v", err)
	assert.Contains(t, err.Error(), f.ID)
	assert.Contains(t, err.Error(), g.ID)
	assert.Contains(t, err.Error(), "config.socket")
}

func TestLegacyStateAdoptedOrSetAside(t *testing.T) {
	dir := t.TempDir()
	old, err := OpenWithOptions(dir, Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, old.Begin(&Run{ID: "old-1", Steps: map[string]*Step{"step.a": {Address: "step.a", Status: Pending}}}))
	require.NoError(t, old.Update(Step{Address: "step.a", Status: Done}))
	require.NoError(t, old.Close())

	s, err := OpenStore(dir)
	require.NoError(t, err)
	legacy, err := s.Legacy()
	require.NoError(t, err)
	require.NotNil(t, legacy)
	assert.Equal(t, "old-1", legacy.ID)
	assert.True(t, legacy.Resumable())

	c := testCluster(strings.Repeat("c", 64), "/s")
	to, err := s.AdoptLegacy(c)
	require.NoError(t, err)
	legacy, err = s.Legacy()
	require.NoError(t, err)
	assert.Nil(t, legacy, "nothing left at the top")
	run, err := (&Journal{dir: to}).Load()
	require.NoError(t, err)
	require.NotNil(t, run)
	assert.Equal(t, "old-1", run.ID)
	assert.Equal(t, Done, run.Steps["step.a"].Status, "the log's records came along")

	// A second legacy journal, set aside untouched.
	old2, err := OpenWithOptions(dir, Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, old2.Begin(&Run{ID: "old-2", Steps: map[string]*Step{}}))
	require.NoError(t, old2.Close())
	aside, err := s.SetAsideLegacy()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(filepath.Base(aside), "legacy-"))
	_, err = os.Stat(filepath.Join(aside, "run.json"))
	require.NoError(t, err)
	legacy, err = s.Legacy()
	require.NoError(t, err)
	assert.Nil(t, legacy)
	// Adopting into a cluster that has a journal already is refused.
	old3, err := OpenWithOptions(dir, Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, old3.Begin(&Run{ID: "old-3", Steps: map[string]*Step{}}))
	require.NoError(t, old3.Close())
	_, err = s.AdoptLegacy(c)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already has a journal")
}
