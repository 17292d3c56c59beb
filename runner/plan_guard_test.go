package runner_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner"
)

// The plan shows a rollout's guard once, with its first batch: what is
// sampled, how often, and the budgets.
func TestPlanShowsTheGuard(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(guarded, "halt", "max_errors = 10\n    max_server_errors = 2"))
	p, diags := runner.MakePlan(f.graph)
	require.False(t, diags.HasErrors(), diags.Error())
	var b strings.Builder
	require.NoError(t, p.WriteText(&b))
	assert.Equal(t, 1, strings.Count(b.String(), "guard: "), b.String())
	assert.Contains(t, b.String(), "      guard: load_balancer.front.metrics every 100ms, max_errors 10, max_server_errors 2 over 10s; broken -> on_failure\n")
}
