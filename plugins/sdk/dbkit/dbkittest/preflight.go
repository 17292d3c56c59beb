package dbkittest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"
)

// PreflightArgs are a database preflight's arguments ("" is null).
func PreflightArgs(to, runID, backupDir string) map[string]cty.Value {
	s := func(v string) cty.Value {
		if v == "" {
			return cty.NullVal(cty.String)
		}
		return cty.StringVal(v)
	}
	return map[string]cty.Value{"to": s(to), "run_id": s(runID), "backup_dir": s(backupDir)}
}

// UnwritableDir is a folder the test process cannot create files in, even
// as root: mode 0555, and immutable (chattr +i) when running as root.
func UnwritableDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "locked")
	require.NoError(t, os.Mkdir(dir, 0o555))
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot make a folder unwritable for root here (chattr +i: %v: %s)", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
	}
	return dir
}

// DeniedBecause is why writing in UnwritableDir fails: EPERM (immutable)
// for root, EACCES (mode) for anyone else.
func DeniedBecause() string {
	if os.Geteuid() == 0 {
		return "operation not permitted"
	}
	return "permission denied"
}
