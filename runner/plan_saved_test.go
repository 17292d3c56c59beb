package runner_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
)

// savedOf makes the saved plan of upgrade with the given variable value.
func savedOf(t *testing.T, label, salt string, plugins map[string]runner.PluginInfo, seen string) *runner.SavedPlan {
	t.Helper()
	src := cluster + upgrade + `
variable "label" {
  type = string
}
variable "secret" {
  type      = string
  sensitive = true
  default   = "hunter2"
}
preflight "lb" {
  run = load_balancer.front.preflight
  with {
    servers = ["n1", "n2", "n3"]
  }
}
`
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": src}, playbooks.LoadOptions{Env: []string{}, Vars: []string{"label=" + label}})
	require.False(t, diags.HasErrors(), diags.Error())
	g, diags := runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	p, diags := runner.MakePlan(g)
	require.False(t, diags.HasErrors(), diags.Error())
	pre := &runner.PreflightReport{Results: map[string]cty.Value{"preflight.lb": cty.ObjectVal(map[string]cty.Value{"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(3)})}}
	if seen != "" {
		pre.Results["preflight.lb"] = cty.ObjectVal(map[string]cty.Value{"servers": cty.NumberIntVal(3), "in_service": cty.NumberIntVal(2)})
	}
	sp, err := runner.SavePlan(p, plugins, pre, "cluster-1", salt)
	require.NoError(t, err)
	return sp
}

// TestSavedPlanDifferences: a saved plan read back from its file still
// holds against the same inputs, and names each input that changed.
func TestSavedPlanDifferences(t *testing.T) {
	kit := map[string]runner.PluginInfo{"node_pool.cluster": {Name: "mock", Checksum: "aaa"}}
	saved := savedOf(t, "blue", "", kit, "")
	path := filepath.Join(t.TempDir(), "upgrade.plan")
	require.NoError(t, saved.Write(path))
	back, err := runner.ReadSavedPlan(path)
	require.NoError(t, err)
	raw, err := json.Marshal(back)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "hunter2", "no sensitive value, not even an argument")
	assert.Contains(t, string(raw), `(sensitive)`, "the copy's dsn reaches step.point as (sensitive)")

	assert.Empty(t, back.Differences(savedOf(t, "blue", back.Salt, kit, "")), "the same inputs: it holds")
	assert.Equal(t, []string{"variable label: changed value"}, back.Differences(savedOf(t, "green", back.Salt, kit, "")))
	assert.Equal(t, []string{"plugin of node_pool.cluster: mock sha256:aaa -> mock sha256:bbb"},
		back.Differences(savedOf(t, "blue", back.Salt, map[string]runner.PluginInfo{"node_pool.cluster": {Name: "mock", Checksum: "bbb"}}, "")))
	assert.Equal(t, []string{`preflight saw, at preflight.lb: {"in_service":3,"servers":3} -> {"in_service":2,"servers":3}`},
		back.Differences(savedOf(t, "blue", back.Salt, kit, "one out")))
	assert.NotEqual(t, back.Variables["label"], savedOf(t, "blue", "", kit, "").Variables["label"], "each plan salts its digests")
}

func TestReadSavedPlanRefusesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.json")
	require.NoError(t, (&runner.SavedPlan{Format: 99, Playbook: "/p"}).Write(path))
	_, err := runner.ReadSavedPlan(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "format 99; this upshift reads format 1")
}
