package procfs

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A command started with RunGroup and no Env of its own gets the minimal
// environment, not this process's: no UPSHIFT_VAR_* secret reaches it.
func TestRunGroupChildEnv(t *testing.T) {
	t.Setenv("UPSHIFT_VAR_db_password", "hunter2")
	t.Setenv("LANG", "C.UTF-8")
	cmd := exec.Command("env")
	var out bytes.Buffer
	cmd.Stdout = &out
	code, err := RunGroup(context.Background(), cmd)
	require.NoError(t, err)
	require.Equal(t, 0, code)
	assert.NotContains(t, out.String(), "hunter2")
	assert.Contains(t, out.String(), "LANG=C.UTF-8\n")
	assert.Contains(t, out.String(), "PATH=")

	env := ChildEnv(map[string]string{"PGPASSWORD": "p", "LANG": "de_DE.UTF-8"})
	assert.Contains(t, env, "PGPASSWORD=p")
	assert.Contains(t, env, "LANG=de_DE.UTF-8")
	assert.NotContains(t, env, "LANG=C.UTF-8")
	assert.NotContains(t, strings.Join(env, "\n"), "hunter2")
}

func TestHideValues(t *testing.T) {
	env := map[string]string{"PW": "hunter2!", "LONGER": "hunter2!-and-more", "ON": "yes"}
	assert.Equal(t, "auth failed for (hidden) and (hidden); yes", HideValues("auth failed for hunter2!-and-more and hunter2!; yes", env))
}
