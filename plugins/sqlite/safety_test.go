package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// A is 0600: its backup is 0600 in a folder made 0700, its copy B no more
// open than A, and the copy's marker private too.
func TestBackupsAndCopiesAreNoMoreOpenThanA(t *testing.T) {
	a, _ := newDB(t)
	require.NoError(t, os.Chmod(a, 0o600))
	p := configured(t, a)
	bak := filepath.Join(t.TempDir(), "backups", "run-1", "a.sqlite")
	resp := invoke(p, "backup", map[string]cty.Value{"to": cty.StringVal(bak)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	resp = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	for p, want := range map[string]os.FileMode{bak: 0o600, filepath.Dir(bak): 0o700, b: 0o600, b + copyMarker: 0o600} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), p)
	}
	// A copy of a 0640 A is 0640: the nodes open B as they opened A.
	require.NoError(t, os.Chmod(a, 0o640))
	b2 := filepath.Join(filepath.Dir(a), "b2.sqlite")
	resp = invoke(p, "copy", map[string]cty.Value{"to": cty.StringVal(b2), "replace": cty.NullVal(cty.Bool)})
	require.False(t, resp.Diagnostics.HasErrors(), resp.Diagnostics.Err())
	fi, err := os.Stat(b2)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}
