package runner_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner"
	"github.com/upshift-dev/upshift/runner/journal"
)

const identityPlaybook = `
variable "dsn" {
  type      = string
  sensitive = true
}
variable "token" {
  type      = string
  sensitive = true
  default   = "tok-secret-1"
}
variable "socket" {
  type    = string
  default = "/run/haproxy.sock"
}
variable "nodes" {
  type = any
  default = [
    { name = "n1", address = "10.0.0.1:80", migrate = ["a"] },
    { name = "n2", address = "10.0.0.2:80", migrate = ["a"] },
  ]
}
load_balancer "front" {
  plugin = "mock"
  config {
    socket = var.socket
  }
}
database "main" {
  plugin = "mock"
  config {
    dsn   = var.dsn
    token = var.token
  }
}
node_pool "cluster" {
  plugin = "mock"
  nodes  = var.nodes
}
`

func identify(t *testing.T, vars ...string) *journal.Cluster {
	t.Helper()
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": identityPlaybook},
		playbooks.LoadOptions{Env: []string{}, Vars: append([]string{"dsn=postgres://app:pa55word@db1:5432/platform"}, vars...)})
	require.False(t, diags.HasErrors(), diags.Error())
	return runner.Identify(pb)
}

func TestClusterIdentity(t *testing.T) {
	base := identify(t)
	require.Len(t, base.ID, 64)
	assert.Len(t, base.Short(), 12)
	// Stable: the same resources, another folder, the same identity.
	assert.Equal(t, base.ID, identify(t).ID)

	// What a run changes to fix a failure is not the cluster.
	same := identify(t, `nodes=[{ name = "n1", address = "10.0.0.1:80", migrate = ["b"] }, { name = "n2", address = "10.0.0.2:80", migrate = ["c"] }]`)
	assert.Equal(t, base.ID, same.ID, "a node's commands are not its identity")

	// Where the resources point is.
	other := identify(t, `nodes=[{ name = "n1", address = "10.0.0.9:80" }, { name = "n2", address = "10.0.0.2:80" }]`)
	assert.NotEqual(t, base.ID, other.ID)
	assert.Equal(t, []string{`node_pool.cluster nodes.n1: "10.0.0.1:80" in ` + base.Short() + `, "10.0.0.9:80" in ` + other.Short()}, journal.Diff(base, other))
	lb := identify(t, "socket=/run/other.sock")
	assert.NotEqual(t, base.ID, lb.ID)
	assert.Contains(t, strings.Join(journal.Diff(base, lb), "\n"), "load_balancer.front config.socket")
	db := identify(t, "dsn=postgres://app:pa55word@db2:5432/platform")
	assert.NotEqual(t, base.ID, db.ID, "a sensitive DSN still tells databases apart, without its password")

	// Sensitive values never in clear: the DSN without its password, a
	// secret with nothing recognisable left out.
	b, err := json.Marshal(base)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "pa55word")
	assert.NotContains(t, string(b), "tok-secret-1")
	assert.Contains(t, string(b), "postgres://app@db1:5432/platform (password removed)")
	// A changed password is the same database.
	assert.Equal(t, base.ID, identify(t, "dsn=postgres://app:n3w@db1:5432/platform").ID)
	assert.Equal(t, base.ID, identify(t, "token=tok-secret-2").ID)
	assert.Contains(t, base.Describe(), "node_pool.cluster (mock, 2 nodes)")
}

func TestWithoutCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5432/db?sslmode=disable":         "postgres://u@h:5432/db?sslmode=disable",
		"host=h port=5432 user=u password=secret dbname=d": "host=h port=5432 user=u dbname=d",
		"host=h password='it\\'s' dbname=d":                "host=h dbname=d",
		"u:secret@tcp(127.0.0.1:3306)/db":                  "u@tcp(127.0.0.1:3306)/db",
		"mysql://u@h/db?password=x":                        "mysql://u@h/db",
	} {
		got, ok := runner.WithoutCredentials(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"hunter2", "postgres://u@h/db"} {
		_, ok := runner.WithoutCredentials(in)
		assert.False(t, ok, "%s: nothing recognisable: left out", in)
	}
}

// TestClusterName: the playbook's top-level cluster names the cluster in
// messages; it does not change its identity.
func TestClusterName(t *testing.T) {
	load := func(extra string, vars ...string) (*journal.Cluster, error) {
		pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": identityPlaybook + extra},
			playbooks.LoadOptions{Env: []string{}, Vars: append([]string{"dsn=postgres://app:pw@db1/platform"}, vars...)})
		if diags.HasErrors() {
			return nil, diags
		}
		return runner.Identify(pb), nil
	}
	plain, err := load("")
	require.NoError(t, err)
	assert.Equal(t, plain.Short(), plain.Label())
	named, err := load("\nvariable \"cluster_name\" {\n  type = string\n}\ncluster = var.cluster_name\n", "cluster_name=prod-eu")
	require.NoError(t, err)
	assert.Equal(t, plain.ID, named.ID, "a name does not change the identity")
	assert.Equal(t, "prod-eu ("+plain.Short()+")", named.Label())

	_, err = load("\ncluster = var.dsn\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot come from a sensitive value")
	_, err = load("\ncluster = \"\"\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Invalid cluster name")
	_, err = load("\ncluster = \"a\"\ncluster = \"b\"\n")
	require.Error(t, err)
}
