package playbooks_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/playbooks"
)

func TestStateBlock(t *testing.T) {
	src := map[string]string{"main.hcl": `
variable "state_dsn" {
  type    = string
  default = "postgres://upshift@db.example:5432/upshift_state"
}
state {
  backend  = "postgres"
  dsn      = var.state_dsn
  key_file = "/run/secrets/upshift-state.key"
  retry    = "90s"
}
`}
	pb, diags := playbooks.NewParser().LoadFiles(t.TempDir(), src, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	require.NotNil(t, pb.State)
	assert.Equal(t, "postgres", pb.State.Backend)
	assert.Equal(t, "postgres://upshift@db.example:5432/upshift_state", pb.State.DSN)
	assert.Equal(t, "/run/secrets/upshift-state.key", pb.State.KeyFile)
	assert.Equal(t, 90*time.Second, pb.State.Retry)

	pb, diags = playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": "variable \"x\" {\n  default = 1\n}\n"}, playbooks.LoadOptions{Env: []string{}})
	require.False(t, diags.HasErrors(), diags.Error())
	assert.Nil(t, pb.State, "no state block: the command's flags and environment decide")
}

// TestStateBlockErrors: each mistake is a diagnostic at its line and
// column, and a password never makes it into the playbook.
func TestStateBlockErrors(t *testing.T) {
	cases := map[string]struct{ src, summary, at string }{
		"password in dsn": {`state {
  backend = "postgres"
  dsn     = "postgres://upshift:s3cret@db/state"
}`, "Password in the state DSN", "main.hcl:3:13"},
		"key=value password": {`state {
  backend = "postgres"
  dsn     = "host=db user=upshift password=s3cret"
}`, "Password in the state DSN", "main.hcl:3:13"},
		"unknown backend": {`state {
  backend = "s3"
}`, "Invalid state backend", "main.hcl:2:13"},
		"postgres without dsn": {`state {
  backend = "postgres"
}`, "Missing state DSN", "main.hcl:1:1"},
		"sensitive": {`variable "d" {
  default   = "postgres://db/state"
  sensitive = true
}
state {
  backend = "postgres"
  dsn     = var.d
}`, "Invalid state setting", "main.hcl:7:13"},
		"bad retry": {`state {
  backend = "local"
  retry   = "soon"
}`, "Invalid state retry", "main.hcl:3:13"},
		"two blocks": {`state {
  backend = "local"
}
state {
  backend = "local"
}`, "Duplicate", "main.hcl:4:1"},
		"unknown argument": {`state {
  backend  = "local"
  password = "x"
}`, "Unsupported argument", "main.hcl:3:3"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, diags := playbooks.NewParser().LoadFiles(t.TempDir(), map[string]string{"main.hcl": c.src}, playbooks.LoadOptions{Env: []string{}})
			require.True(t, diags.HasErrors())
			var found bool
			for _, d := range diags {
				if d.Subject != nil {
					at := fmt.Sprintf("%s:%d:%d", filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column)
					found = found || at == c.at && strings.Contains(d.Summary, c.summary)
				}
				assert.NotContains(t, d.Detail, "s3cret")
				assert.NotContains(t, d.Summary, "s3cret")
			}
			assert.True(t, found, "no %q at %s in %s", c.summary, c.at, diags.Error())
		})
	}
}
