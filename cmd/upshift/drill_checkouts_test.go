package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
)

// TestDrillSecondCheckoutIsRefused: two operators upgrade the same lab
// from two checkouts of the playbook (two state folders that know nothing
// of each other). The first run is frozen mid-upgrade (SIGSTOP: its
// plugins, and the lock their database connection holds, live on); the
// second is refused by the lock in the cluster's database, naming the
// first, and changes nothing; the first, continued, finishes. Traffic runs
// through the lab the whole time.
func TestDrillSecondCheckoutIsRefused(t *testing.T) {
	needHAProxy(t)
	longDrill(t)
	d := startDrillLab(t, "lab")
	one, two := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
	for _, dir := range []string{one, two} {
		require.NoError(t, lab.CopyPlaybook(shippedPlaybook, dir))
		runOK(t, "init", dir, "-var-file", d.s.VarsFile())
	}

	first := upshift(t, "run", one, "-var-file", d.s.VarsFile(), "--json")
	var out syncBuffer
	first.Stdout, first.Stderr = &out, &out
	require.NoError(t, first.Start())
	defer func() { _ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL); _ = first.Wait() }()
	// Any step begun means the cluster's lock is taken (it comes first).
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"step_started"`) }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, syscall.Kill(first.Process.Pid, syscall.SIGSTOP))

	second, code := runCode(t, "run", two, "-var-file", d.s.VarsFile())
	assert.Equal(t, exitLocked, code, second)
	assert.Contains(t, second, "is held by upshift pid "+fmt.Sprint(first.Process.Pid))
	assert.Contains(t, second, "Nothing was changed.")
	runs, _ := filepath.Glob(filepath.Join(two, ".upshift", "state", "clusters", "*", "run.json"))
	assert.Empty(t, runs, "the second checkout began no run")

	require.NoError(t, syscall.Kill(first.Process.Pid, syscall.SIGCONT))
	require.NoError(t, first.Wait(), "%s", out.String())
	d.upgraded(t)
	backups, err := os.ReadDir(filepath.Join(d.s.Dir, "backups"))
	require.NoError(t, err)
	assert.Len(t, backups, 1, "one backup: the second run took none")
	d.finish(t, "second checkout")
}
