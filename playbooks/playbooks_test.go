package playbooks_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/schema"
)

var update = flag.Bool("update", false, "rewrite golden files")

// check runs everything validate runs: load, graph, plan.
func check(t testing.TB, dir string, opts playbooks.LoadOptions) (*playbooks.Parser, *runner.Plan, hcl.Diagnostics) {
	p := playbooks.NewParser()
	if opts.Env == nil {
		opts.Env = []string{}
	}
	pb, diags := p.Load(dir, opts)
	if diags.HasErrors() {
		return p, nil, diags
	}
	g, ds := runner.BuildGraph(pb)
	diags = append(diags, ds...)
	if diags.HasErrors() {
		return p, nil, diags
	}
	plan, ds := runner.MakePlan(g)
	return p, plan, append(diags, ds...)
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run go test ./playbooks -update")
	assert.Equal(t, string(want), string(got))
}

var location = regexp.MustCompile(`(?m)^main\.hcl:\d+:\d+: error: |^vars\.hcl\.in:\d+:\d+: error: `)

// TestInvalidPlaybooks loads every broken playbook under testdata/invalid:
// each must fail with diagnostics that carry file:line:col and a snippet,
// matching its golden file.
func TestInvalidPlaybooks(t *testing.T) {
	cases, err := filepath.Glob("testdata/invalid/*")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(cases), 30)
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var opts playbooks.LoadOptions
			if _, err := os.Stat(filepath.Join(dir, "vars.hcl.in")); err == nil {
				opts.VarFiles = []string{filepath.Join(dir, "vars.hcl.in")}
			}
			p, plan, diags := check(t, dir, opts)
			require.True(t, diags.HasErrors(), "a broken playbook must not validate")
			assert.Nil(t, plan)
			var buf bytes.Buffer
			require.NoError(t, playbooks.WriteDiagnostics(&buf, p.Files(), diags, dir, false))
			out := buf.String()
			for _, d := range diags {
				require.NotNil(t, d.Subject, "diagnostic %q has no source location", d.Summary)
			}
			assert.Regexp(t, location, out, "diagnostics name file:line:col")
			assert.Regexp(t, `(?m)^ +\d+: `, out, "diagnostics show a source snippet")
			golden(t, filepath.Join(dir, "diagnostics.golden"), buf.Bytes())
		})
	}
}

func shippedOpts() playbooks.LoadOptions {
	return playbooks.LoadOptions{VarFiles: []string{"testdata/three-nodes.vars.hcl"}, Env: []string{}}
}

// TestShippedPlaybookPlan holds the plan of the shipped rolling upgrade for
// a 3-node cluster in golden files, and checks the properties that make it
// safe, independently of the golden text.
func TestShippedPlaybookPlan(t *testing.T) {
	_, plan, diags := check(t, "rolling-upgrade", shippedOpts())
	require.False(t, diags.HasErrors(), diags.Error())

	var text, js bytes.Buffer
	require.NoError(t, plan.WriteText(&text))
	require.NoError(t, plan.WriteJSON(&js))
	golden(t, "testdata/rolling-upgrade.plan.golden", text.Bytes())
	golden(t, "testdata/rolling-upgrade.plan.json.golden", js.Bytes())

	pos := map[string]int{}
	for i, ps := range plan.Steps {
		pos[ps.Instance.Addr] = i
	}
	at := func(step, node string) int {
		i, ok := pos[runner.InstanceAddr(step, node, true)]
		require.True(t, ok, "plan lacks %s for %s", step, node)
		return i
	}
	nodes := []string{"node-1", "node-2", "node-3"}
	rolloutSteps := []string{"drain", "stop", "point", "install", "migrate", "purge_generated", "marker", "start", "healthy", "enable"}
	firstTouch := len(plan.Steps)
	for _, n := range nodes {
		firstTouch = min(firstTouch, at("drain", n))
	}
	// Read-only everywhere, backup and copy before any node is touched.
	for _, n := range nodes {
		assert.Less(t, at("read_only", n), firstTouch)
		assert.Less(t, at("backup_data", n), firstTouch)
	}
	assert.Less(t, pos["step.backup"], firstTouch)
	assert.Less(t, pos["step.copy"], firstTouch)
	// The processing node (node-2) goes first, all its steps in order.
	for i := 1; i < len(rolloutSteps); i++ {
		assert.Less(t, at(rolloutSteps[i-1], "node-2"), at(rolloutSteps[i], "node-2"))
	}
	for _, other := range []string{"node-1", "node-3"} {
		assert.Less(t, at("enable", "node-2"), at("drain", other), "processing node finishes before %s starts", other)
	}
	// Never two nodes out of the load balancer at once: each drain comes
	// after the previous node's enable, in the graph, not only in this order.
	order := []string{"node-2", "node-1", "node-3"}
	for i := 1; i < len(order); i++ {
		assert.Less(t, at("enable", order[i-1]), at("drain", order[i]))
	}
	g := plan.Graph
	assert.True(t, g.DAG.DependsOn(runner.InstanceAddr("drain", "node-1", true), runner.InstanceAddr("enable", "node-2", true)))
	assert.True(t, g.DAG.DependsOn(runner.InstanceAddr("drain", "node-3", true), runner.InstanceAddr("enable", "node-1", true)))
}

func TestVariablePrecedence(t *testing.T) {
	src := map[string]string{"main.hcl": `
variable "a" {
  type    = string
  default = "default"
}
variable "n" {
  type    = list(string)
  default = []
}
`}
	cases := []struct {
		name string
		opts playbooks.LoadOptions
		want string
	}{
		{"default", playbooks.LoadOptions{Env: []string{}}, "default"},
		{"env", playbooks.LoadOptions{Env: []string{"UPSHIFT_VAR_a=env"}}, "env"},
		{"flag beats env", playbooks.LoadOptions{Env: []string{"UPSHIFT_VAR_a=env"}, Vars: []string{"a=flag"}}, "flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, c.opts)
			require.False(t, diags.HasErrors(), diags.Error())
			assert.Equal(t, c.want, pb.Variables["a"].Value.AsString())
		})
	}
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{`UPSHIFT_VAR_n=["x", "y"]`}})
	require.False(t, diags.HasErrors(), diags.Error())
	assert.Equal(t, 2, pb.Variables["n"].Value.LengthInt(), "non-string variables from the environment are parsed as HCL")
}

func TestSensitiveVariableIsNeverShown(t *testing.T) {
	src := map[string]string{"main.hcl": `
variable "password" {
  type      = string
  sensitive = true
}
node_pool "cluster" {
  plugin = "process"
  nodes  = [{ name = "a" }, { name = "b" }]
}
step "point" {
  run = node_pool.cluster.set_config
  with {
    node  = "a"
    key   = "db.password"
    value = "pw=${var.password}"
  }
}
`}
	dir := t.TempDir()
	for n, s := range src {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644))
	}
	_, plan, diags := check(t, dir, playbooks.LoadOptions{Vars: []string{"password=hunter2"}, Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	var text, js bytes.Buffer
	require.NoError(t, plan.WriteText(&text))
	require.NoError(t, plan.WriteJSON(&js))
	assert.NotContains(t, text.String(), "hunter2")
	assert.NotContains(t, js.String(), "hunter2")
	assert.Contains(t, text.String(), "value = (sensitive)")
}

func TestBatchSizes(t *testing.T) {
	src := func(batches string) map[string]string {
		return map[string]string{"main.hcl": fmt.Sprintf(`
node_pool "cluster" {
  plugin = "process"
  nodes  = [for i in range(10) : { name = "n${i}" }]
}
rollout "r" {
  over    = node_pool.cluster.nodes
  batches = %s
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
  }
}
`, batches)}
	}
	for _, c := range []struct {
		batches string
		sizes   []int
	}{
		{`[1]`, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{`[1, 2, "50%"]`, []int{1, 2, 5, 2}},
		{`["30%"]`, []int{3, 3, 3, 1}},
		{`[4, 100]`, []int{4, 6}},
	} {
		t.Run(c.batches, func(t *testing.T) {
			pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src(c.batches), playbooks.LoadOptions{Env: []string{}})
			require.False(t, diags.HasErrors(), diags.Error())
			g, diags := runner.BuildGraph(pb)
			require.False(t, diags.HasErrors(), diags.Error())
			var sizes []int
			for _, b := range g.Items["r"] {
				sizes = append(sizes, len(b))
			}
			assert.Equal(t, c.sizes, sizes)
		})
	}
}

func TestSensitiveValuesThroughForEach(t *testing.T) {
	src := `
variable "targets" {
  type      = any
  sensitive = true
}
variable "servers" {
  type = list(object({ name = string, password = string }))
}
node_pool "cluster" {
  plugin = "process"
  nodes  = [{ name = "a" }, { name = "b" }]
}
step "whole" {
  for_each = var.targets
  run      = node_pool.cluster.start
  with {
    node = each.key
  }
}
`
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	_, _, diags := check(t, dir, playbooks.LoadOptions{Vars: []string{`targets=["s3cret"]`, `servers=[]`}, Env: []string{}})
	require.True(t, diags.HasErrors(), "a sensitive collection cannot become instance keys")
	assert.Contains(t, diags.Error(), "cannot be sensitive")
	assert.NotContains(t, diags.Error(), "s3cret")
}

func TestConfigObjectRejectsUnknownArguments(t *testing.T) {
	src := map[string]string{"main.hcl": `
load_balancer "front" {
  plugin = "haproxy"
  config = { socket = "/run/haproxy.sock", bakend = "platform" }
}
`}
	withConfig := func(_ *playbooks.PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
		p := schema.ContractPlugin(kind)
		p.Config = &schema.Object{Attributes: []*schema.Attribute{
			{Name: "socket", Type: cty.String, Required: true}, {Name: "backend", Type: cty.String, Required: true},
		}}
		return p, nil
	}
	_, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}, Schemas: withConfig})
	require.True(t, diags.HasErrors())
	assert.Contains(t, diags.Error(), `no config argument "bakend" (did you mean "backend"?)`)
}

// TestStepWaitingForAllInstancesKeepsItsPlace: a step that waits for every
// instance of a for_each step comes as soon as they are done, before steps
// declared after it.
func TestStepWaitingForAllInstancesKeepsItsPlace(t *testing.T) {
	src := map[string]string{"main.hcl": `
node_pool "cluster" {
  plugin = "process"
  nodes  = [{ name = "a" }, { name = "b" }]
}
step "ro" {
  for_each = toset(["a", "b"])
  run      = node_pool.cluster.read_only
  with {
    node    = each.key
    enabled = true
  }
}
step "cfg" {
  run        = node_pool.cluster.touch
  depends_on = [step.ro]
  with {
    node = "a"
    path = "m"
  }
}
rollout "r" {
  over = node_pool.cluster.nodes
  step "stop" {
    run = node_pool.cluster.stop
    with {
      node = each.value.name
    }
  }
}
`}
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	g, diags := runner.BuildGraph(pb)
	require.False(t, diags.HasErrors(), diags.Error())
	plan, diags := runner.MakePlan(g)
	require.False(t, diags.HasErrors(), diags.Error())
	var order []string
	for _, s := range plan.Steps {
		order = append(order, s.Instance.Addr)
	}
	assert.Equal(t, []string{`step.ro["a"]`, `step.ro["b"]`, "step.cfg", `step.stop["a"]`, `step.stop["b"]`}, order)
}
