package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is an output buffer a test may read while the process writes
// it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// checkout writes a playbook folder over one SQLite database and two
// testkit nodes, with a long step, as a second checkout of the same
// playbook would be.
func checkout(t *testing.T, db string) string {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`
database "main" {
  plugin = "sqlite"
  config {
    path = %q
  }
}

node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = %q
  }
  nodes = [{ name = "n1" }, { name = "n2" }]
}

step "long" {
  run = node_pool.kit.sleep
  with {
    duration = "2s"
  }
}
`, db, filepath.Join(dir, "kit"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	out := runOK(t, "init", dir)
	require.Contains(t, out, "sqlite")
	return dir
}

// TestSecondCheckoutIsRefusedByTheClusterLock: two checkouts of one
// playbook (two state folders) on one cluster: while the first runs, the
// second is refused by the lock in the cluster's database, naming the
// first, and changes nothing; once the first is done, the lock is free.
func TestSecondCheckoutIsRefusedByTheClusterLock(t *testing.T) {
	needBinaries(t)
	db := filepath.Join(t.TempDir(), "a.sqlite")
	require.NoError(t, os.WriteFile(db, nil, 0o600))
	one, two := checkout(t, db), checkout(t, db)

	first := upshift(t, "run", one)
	var out syncBuffer
	first.Stdout, first.Stderr = &out, &out
	require.NoError(t, first.Start())
	defer func() { _ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL); _ = first.Wait() }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "step.long") }, 10*time.Second, 20*time.Millisecond)

	second, err := upshift(t, "run", two).CombinedOutput()
	require.Error(t, err, "%s", second)
	assert.Equal(t, exitLocked, second2code(err), "%s", second)
	assert.Contains(t, string(second), "is held by upshift pid "+fmt.Sprint(first.Process.Pid))
	assert.Contains(t, string(second), "Nothing was changed.")
	runs, _ := filepath.Glob(filepath.Join(two, ".upshift", "state", "clusters", "*", "run.json"))
	assert.Empty(t, runs, "the refused run began no run")

	require.NoError(t, first.Wait(), "%s", out.String())
	runOK(t, "run", two) // the lock was released with the first run
}
