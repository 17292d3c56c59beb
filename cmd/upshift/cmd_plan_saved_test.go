package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/runner"
)

// savedKit is kitPlaybook with a variables file (label) and a sensitive
// variable (token), planned to a saved plan.
func savedKit(t *testing.T) (dir, state, varFile, planFile string) {
	t.Helper()
	dir, state = kitPlaybook(t, 3, `
variable "label" {
  type = string
}
variable "token" {
  type      = string
  sensitive = true
}
`)
	varFile = filepath.Join(t.TempDir(), "cluster.vars.hcl")
	require.NoError(t, os.WriteFile(varFile, []byte("label = \"blue\"\n"), 0o644))
	initPlaybook(t, dir, "-var-file", varFile, "-var", "token=hunter2")
	planFile = filepath.Join(t.TempDir(), "upgrade.plan")
	out := runOK(t, "plan", dir, "-var-file", varFile, "-var", "token=hunter2", "-out", planFile)
	assert.Contains(t, out, "Saved this plan to "+planFile)
	assert.Contains(t, out, "Sensitive variables are not saved (token)")
	assert.Empty(t, recordCounts(t, state), "plan -out changes nothing")
	return dir, state, varFile, planFile
}

// TestSavedPlanIsAppliedVerbatim: run FILE applies the saved plan, without
// asking (no terminal here, no --auto-approve: the plan is the approval),
// every step of it and no other; the file holds no sensitive value.
func TestSavedPlanIsAppliedVerbatim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	_, state, _, planFile := savedKit(t)
	raw, err := os.ReadFile(planFile)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "hunter2")
	sp, err := runner.ReadSavedPlan(planFile)
	require.NoError(t, err)
	require.Len(t, sp.Steps, 9)

	run := bare(t, "run", planFile, "-var", "token=hunter2") // the token again: it was not saved
	out, err := run.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "The saved plan "+planFile)
	assert.Contains(t, string(out), "still holds: applying it.")
	counts := recordCounts(t, state)
	var ran []string
	for k, n := range counts {
		assert.Equal(t, 1, n, k)
		ran = append(ran, k)
	}
	assert.ElementsMatch(t, []string{"first-n1", "first-n2", "first-n3", "second-n1", "second-n2", "second-n3"}, ran)
}

// bare is upshift without the test helper's --auto-approve: a saved plan
// must need none.
func bare(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	c := upshift(t)
	c.Args = append([]string{c.Path}, args...)
	return c
}

// TestSavedPlanRefusedWhenAVariableChanged: a variable changed between plan
// and run (here the variables file; a sensitive one given otherwise counts
// too): run refuses, naming it, and changes nothing.
func TestSavedPlanRefusedWhenAVariableChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	_, state, varFile, planFile := savedKit(t)
	require.NoError(t, os.WriteFile(varFile, []byte("label = \"green\"\n"), 0o644))
	c := bare(t, "run", planFile, "-var", "token=hunter2")
	out, err := c.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitRefused, c.ProcessState.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "Error: the saved plan "+planFile+" no longer holds; nothing was changed.")
	assert.Contains(t, string(out), "  - variable label: changed value\n")
	assert.NotContains(t, string(out), "variable token")
	assert.Empty(t, recordCounts(t, state))

	require.NoError(t, os.WriteFile(varFile, []byte("label = \"blue\"\n"), 0o644))
	c = bare(t, "run", planFile, "-var", "token=swordfish")
	out, err = c.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "  - variable token: changed value\n")
	assert.NotContains(t, string(out), "swordfish")
	assert.NotContains(t, string(out), "hunter2")
	assert.Empty(t, recordCounts(t, state))
}

// TestSavedPlanRefusedWhenAPluginChanged: the plugin binary was replaced
// (and pinned again with init) between plan and run: run refuses, naming
// the resource and both checksums.
func TestSavedPlanRefusedWhenAPluginChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	plugins := t.TempDir()
	bin, err := os.ReadFile(filepath.Join(binDir, "upshift-plugin-testkit"))
	require.NoError(t, err)
	kit := filepath.Join(plugins, "upshift-plugin-testkit")
	require.NoError(t, os.WriteFile(kit, bin, 0o755))
	t.Setenv("UPSHIFT_PLUGIN_PATH", plugins)
	dir, state, varFile, planFile := savedKit(t)

	// Another build of the plugin: the same program, other bytes.
	require.NoError(t, os.WriteFile(kit, append(bin, []byte("\x00another build")...), 0o755))
	initPlaybook(t, dir, "-var-file", varFile, "-var", "token=hunter2")
	c := bare(t, "run", planFile, "-var", "token=hunter2")
	out, err := c.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitRefused, c.ProcessState.ExitCode(), "%s", out)
	assert.Regexp(t, `  - plugin of node_pool.kit: testkit sha256:[0-9a-f]{64} -> testkit sha256:[0-9a-f]{64}\n`, string(out))
	assert.Empty(t, recordCounts(t, state))
}

// TestSavedPlanRefusedWhenAServerLeftTheLB: on the lab, behind a real
// HAProxy, a server is taken out of rotation between plan and run: run
// refuses, saying what preflight saw then and sees now, and changes
// nothing.
func TestSavedPlanRefusedWhenAServerLeftTheLB(t *testing.T) {
	needHAProxy(t)
	d := startDrillLab(t, "lab")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())
	planFile := filepath.Join(t.TempDir(), "upgrade.plan")
	runOK(t, "plan", playbook, "-var-file", d.s.VarsFile(), "-out", planFile)
	sp, err := runner.ReadSavedPlan(planFile)
	require.NoError(t, err)
	assert.Contains(t, string(sp.Observed["preflight.load_balancer"]), `"in_service":3`)
	assert.Contains(t, string(sp.Observed["preflight.nodes"]), `"node-1":"1"`)

	ctl := d.s.HAProxyCtl()
	api := runtimeapi.NewClient(ctl.Socket, 5*time.Second)
	ctx := context.Background()
	_, err = api.Do(ctx, "disable server "+ctl.Backend+"/"+d.s.Nodes[1].Name)
	require.NoError(t, err)
	c := bare(t, "run", planFile)
	out, err := c.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitRefused, c.ProcessState.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "no longer holds; nothing was changed.")
	assert.Contains(t, string(out), "  - preflight preflight.load_balancer now finds a problem: ")
	assert.Contains(t, string(out), d.s.Nodes[1].Name)
	d.untouched(t)

	_, err = api.Do(ctx, "enable server "+ctl.Backend+"/"+d.s.Nodes[1].Name)
	require.NoError(t, err)
	c = bare(t, "run", planFile)
	out, err = c.CombinedOutput()
	require.NoError(t, err, "%s", out)
	d.upgraded(t)
	d.finish(t, "saved plan: refused while a server was out of the LB, applied once it was back")
}
