package lbkit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// affBackend is a pfBackend that reports session affinity.
type affBackend struct {
	pfBackend
	aff lbkit.Affinity
	err error
}

func (b *affBackend) Affinity(context.Context) (lbkit.Affinity, error) { return b.aff, b.err }

// TestPreflightWarnsWhenAffinityIsOff: affinity off is a warning (a
// progress line), not a problem; on, preflight says how; a load balancer
// that cannot tell is a problem.
func TestPreflightWarnsWhenAffinityIsOff(t *testing.T) {
	ctx := context.Background()
	b := &affBackend{pfBackend: pfBackend{servers: []lbkit.Server{ready("s1"), ready("s2")}},
		aff: lbkit.Affinity{How: "round robin", Enable: "add a cookie"}}
	p := sdktest.Provider(t, lbkit.Plugin("pf", "0.0.1", config, func(context.Context, plugins.ConfigureRequest) (lbkit.Backend, error) {
		return b, nil
	}))
	require.NoError(t, p.Configure(ctx, plugins.ConfigureRequest{Config: cty.EmptyObjectVal}).Err())
	invoke := func() (plugins.InvokeResponse, []string) {
		var mu sync.Mutex
		var lines []string
		resp := p.Invoke(ctx, plugins.InvokeRequest{Action: "preflight", Args: pfArgs([]string{"s1"}, null, null), Progress: func(l string) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, l)
		}})
		mu.Lock()
		defer mu.Unlock()
		return resp, lines
	}

	resp, lines := invoke()
	require.NoError(t, resp.Diagnostics.Err(), "a warning does not fail the preflight")
	require.Len(t, lines, 1)
	assert.True(t, strings.HasPrefix(lines[0], lbkit.WarningPrefix+"session affinity is off (round robin)"), lines[0])
	assert.Contains(t, lines[0], "database B")
	assert.Contains(t, lines[0], "add a cookie")

	b.aff = lbkit.Affinity{On: true, How: "cookie SRV"}
	resp, lines = invoke()
	require.NoError(t, resp.Diagnostics.Err())
	assert.Equal(t, []string{"session affinity is on: cookie SRV"}, lines)

	b.err = errors.New("show stat: timeout")
	resp, _ = invoke()
	require.True(t, resp.Diagnostics.HasErrors())
	assert.Contains(t, resp.Diagnostics[0].Detail, "cannot tell whether session affinity is on: show stat: timeout")
	assert.Zero(t, b.changes)
}
