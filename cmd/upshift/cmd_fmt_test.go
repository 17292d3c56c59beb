package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFmtSkipInvalid: a file that does not parse fails fmt, unless
// --skip-invalid, which names it, leaves it as it is and formats the rest
// (make fmt over playbooks/, whose test fixtures are broken on purpose).
func TestFmtSkipInvalid(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.hcl"), filepath.Join(dir, "sub", "bad.hcl")
	require.NoError(t, os.MkdirAll(filepath.Dir(bad), 0o755))
	require.NoError(t, os.WriteFile(good, []byte("a=1\n"), 0o644))
	require.NoError(t, os.WriteFile(bad, []byte("a = {\n"), 0o644))

	code, out, stderr := runCLI("fmt", "--recursive", "--skip-invalid", dir)
	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stderr, "skipped "+bad+": it does not parse")
	assert.Contains(t, out, good)
	b, _ := os.ReadFile(good)
	assert.Equal(t, "a = 1\n", string(b))
	b, _ = os.ReadFile(bad)
	assert.Equal(t, "a = {\n", string(b), "a file that does not parse is left alone")

	code, _, stderr = runCLI("fmt", "--recursive", dir)
	assert.Equal(t, exitInvalid, code, "without --skip-invalid it fails")
	assert.Contains(t, stderr, "bad.hcl")
}
