package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
)

func verifyCall(p plugins.Provider, version string, files, same []string, names ...string) plugins.InvokeResponse {
	strs := func(ss []string) cty.Value {
		if len(ss) == 0 {
			return cty.NullVal(cty.List(cty.String))
		}
		l := make([]cty.Value, len(ss))
		for i, s := range ss {
			l[i] = cty.StringVal(s)
		}
		return cty.ListVal(l)
	}
	return call(p, "verify", map[string]cty.Value{"nodes": strs(names), "version": cty.StringVal(version), "files": strs(files), "same_config": strs(same)})
}

// TestVerifyAgainstPlatformd: two real platformd nodes pass verify on
// their version, writable, on one database, once the marker is there; a
// wrong version, a read-only node, a missing marker and nodes on two
// databases are each reported, all at once, and the database's value is
// never shown.
func TestVerifyAgainstPlatformd(t *testing.T) {
	nodes, _, dir := pool(t, "1", "1")
	p := provider(t, nodes)
	for _, n := range []string{"node-1", "node-2"} {
		ok(t, call(p, "start", map[string]cty.Value{"node": node(n)}))
		ok(t, call(p, "wait_healthy", map[string]cty.Value{"node": node(n), "timeout": cty.StringVal("20s")}))
	}
	problems := func(r plugins.InvokeResponse) string {
		t.Helper()
		require.True(t, r.Diagnostics.HasErrors())
		require.Len(t, r.Diagnostics, 1)
		assert.Equal(t, "verify failed", r.Diagnostics[0].Summary)
		return r.Diagnostics[0].Detail
	}
	marker := []string{"rolling-upgrade"}
	same := []string{"db.dsn"}
	data1, data2 := nodeAttr(nodes, 0, "data_dir"), nodeAttr(nodes, 1, "data_dir")

	assert.Equal(t, "2 problem(s):\n"+
		"  - node node-1: "+filepath.Join(data1, "rolling-upgrade")+" is missing\n"+
		"  - node node-2: "+filepath.Join(data2, "rolling-upgrade")+" is missing",
		problems(verifyCall(p, "1", marker, same, "node-1", "node-2")))
	for _, n := range []string{"node-1", "node-2"} {
		ok(t, call(p, "touch", map[string]cty.Value{"node": node(n), "path": cty.StringVal("rolling-upgrade")}))
	}
	res := ok(t, verifyCall(p, "1", marker, same, "node-1", "node-2"))
	assert.True(t, res.RawEquals(cty.ObjectVal(map[string]cty.Value{
		"versions": cty.MapVal(map[string]cty.Value{"node-1": cty.StringVal("1"), "node-2": cty.StringVal("1")}),
	})), "%#v", res)

	// node-2 read-only and pointed at another database; the run's version
	// is 2, not what they run.
	ok(t, call(p, "read_only", map[string]cty.Value{"node": node("node-2"), "enabled": cty.True}))
	other := filepath.Join(dir, "secret-b.sqlite")
	ok(t, call(p, "set_config", map[string]cty.Value{"node": node("node-2"), "key": cty.StringVal("db.dsn"), "value": cty.StringVal(other)}))
	detail := problems(verifyCall(p, "2", marker, same, "node-1", "node-2", "node-9"))
	assert.Equal(t, "5 problem(s):\n"+
		"  - node node-1: runs version 1, not 2\n"+
		"  - node node-2: runs version 1, not 2\n"+
		"  - node node-2: is still in read-only mode: it refuses every write\n"+
		"  - node node-9: not in this pool\n"+
		"  - the nodes hold 2 different values of db.dsn (values not shown): {node-1} {node-2}",
		detail)
	assert.NotContains(t, detail, "secret-b", "a configuration value is never shown")

	// On their version, with no files or config asked, only the read-only
	// node is left to name; read_write settles it.
	assert.Equal(t, "1 problem(s):\n  - node node-2: is still in read-only mode: it refuses every write",
		problems(verifyCall(p, "1", nil, nil, "node-1", "node-2")))
	ok(t, call(p, "read_write", map[string]cty.Value{"node": node("node-2")}))
	ok(t, verifyCall(p, "1", nil, nil, "node-1", "node-2"))
}
