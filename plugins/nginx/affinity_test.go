package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// TestAffinityFromTheUpstreamBlock: a hash on a cookie is affinity on;
// round robin is off, with what to add.
func TestAffinityFromTheUpstreamBlock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "upstream.conf")
	servers := []nginxctl.Server{{Name: "node-1", Addr: "127.0.0.1:1"}, {Name: "node-2", Addr: "127.0.0.1:2"}}
	lb := NewLB(Options{UpstreamFile: file, Upstream: "platform"})

	require.NoError(t, os.WriteFile(file, []byte(nginxctl.RenderUpstream("platform", servers)), 0o644))
	off, err := lb.Affinity(context.Background())
	require.NoError(t, err)
	assert.False(t, off.On)
	assert.Equal(t, "upstream platform: round robin", off.How)
	assert.Contains(t, off.Enable, "hash $cookie_<session cookie> consistent;")
	assert.True(t, strings.HasPrefix(lbkit.AffinityWarning(off), "warning: session affinity is off"))

	require.NoError(t, os.WriteFile(file, []byte(nginxctl.RenderUpstreamBalanced("platform", servers, "hash $cookie_platform_session consistent")), 0o644))
	on, err := lb.Affinity(context.Background())
	require.NoError(t, err)
	assert.True(t, on.On)
	assert.Contains(t, on.How, "the client's cookie platform_session")
}
