package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/runner"
)

// A plugin that quotes what it was given (a sensitive variable, copy's
// dsn) in its errors and progress lines does not get it to the console,
// the events or the journal: the runner scrubs every sensitive string it
// knows from what a plugin says.
func TestPluginMessagesAreScrubbed(t *testing.T) {
	const token = "hunter2-very-secret"
	f := newFixture(t, `
variable "token" {
  type      = string
  sensitive = true
  default   = "`+token+`"
}
step "copy" {
  run = database.main.copy
  with {
    to = "b"
  }
}
step "use" {
  run = node_pool.cluster.set_config
  with {
    node  = "n1"
    key   = "db"
    value = step.copy.result.dsn
  }
}
step "token" {
  run = node_pool.cluster.set_config
  with {
    node  = "n2"
    key   = "token"
    value = var.token
  }
}
`)
	f.nodes.InvokeFn = func(_ context.Context, _ string, args cty.Value) (cty.Value, error) {
		v := args.GetAttr("value").AsString()
		return cty.NilVal, errors.New("cannot write " + v + " (the value was " + v + ")")
	}
	res, err, rec := f.run(runner.Options{})
	require.ErrorIs(t, err, runner.ErrRunFailed)
	require.Len(t, res.Failed, 2)
	dsn := "postgres://admin:s3cret@db/b" // the mock copy's dsn
	var all strings.Builder
	for _, e := range rec.events {
		fmt.Fprintf(&all, "%s %s %s\n", e.Type, e.Message, e.Error)
	}
	assert.NotContains(t, all.String(), token)
	assert.NotContains(t, all.String(), dsn)
	assert.Contains(t, all.String(), "cannot write (sensitive) (the value was (sensitive))")
	assert.Contains(t, all.String(), "working on set_config", "ordinary progress is kept")

	var journal strings.Builder
	require.NoError(t, filepath.Walk(filepath.Join(f.dir, ".upshift"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			journal.Write(b)
		}
		return nil
	}))
	assert.NotContains(t, journal.String(), token, "no secret in the journal files")
	assert.NotContains(t, journal.String(), "s3cret")
}
