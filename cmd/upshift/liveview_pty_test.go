package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLiveViewOnATerminal runs a real `upshift run` (the testkit plugin's
// process) on a pseudo-terminal. Node n1's only step sleeps 6 s and sends
// one progress line as it begins, then nothing: the footer must still show
// its elapsed time moving, n2 queued meanwhile, and no more than one wait
// line per 5 s. Assertions are on what was drawn, not on when.
func TestLiveViewOnATerminal(t *testing.T) {
	needBinaries(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "kitstate")
	require.NoError(t, os.MkdirAll(state, 0o755))
	src := fmt.Sprintf(`
node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = %q
  }
  nodes = [{ name = "n1" }, { name = "n2" }]
}

rollout "items" {
  over         = node_pool.kit.nodes
  max_parallel = 1
  step "hold" {
    run = node_pool.kit.sleep
    with {
      duration = each.key == "n1" ? "6s" : "100ms"
    }
  }
}
`, state)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	initPlaybook(t, dir)

	cmd := upshift(t, "run", dir)
	cmd.Env = append(cmd.Env, "TERM=xterm")
	cmd.SysProcAttr = nil // pty.Start makes it a session leader
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 110})
	require.NoError(t, err)
	defer tty.Close()
	var mu sync.Mutex
	var raw bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			raw.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err = <-waitErr:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("the run did not end within 2 minutes")
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	out := raw.String()
	mu.Unlock()
	require.NoError(t, err, "upshift run:\n%s", out)

	// The terminal's view: the footer's redraws are separated by its
	// cursor-up-and-clear escapes; every drawn line counts.
	text := regexp.MustCompile(`\x1b\[\d+A\x1b\[J`).ReplaceAllString(out, "\n")
	text = strings.ReplaceAll(text, "\r", "")
	assert.NotContains(t, text, "\x1b", "NO_COLOR: no colour, and no escapes but the footer's")

	elapsed := regexp.MustCompile(`(?m)^  n1\s+0/1\s+hold (\d+\.\d)s`)
	var seen []float64
	distinct := map[string]bool{}
	for _, m := range elapsed.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		seen = append(seen, v)
		distinct[m[1]] = true
	}
	require.NotEmpty(t, seen, "the footer never showed n1's step:\n%s", text)
	first, last := seen[0], seen[len(seen)-1]
	assert.GreaterOrEqual(t, last-first, 3.0, "n1's elapsed time must move during the 6 s step with no event (drawn: %v)", seen)
	assert.GreaterOrEqual(t, len(distinct), 6, "redrawn on a timer: %d distinct elapsed times", len(distinct))
	for i := 1; i < len(seen); i++ {
		assert.GreaterOrEqual(t, seen[i], seen[i-1], "elapsed never goes back")
	}
	assert.Regexp(t, `(?m)^  n2\s+0/1\s+queued`, text, "n2 waits its turn, shown as queued")
	assert.Regexp(t, `(?m)^  batch 1/2 \| step 0/2 \| \d+\.\ds elapsed`, text)

	// Lines printed above the footer for n1's step: its start, the
	// progress line it sent, and its end; waits may add at most one line
	// per 5 s.
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "[") && strings.Contains(l, `step.hold["n1"]:`) {
			lines[l] = true // a line is printed once; redraws do not repeat it
		}
	}
	var waits int
	for l := range lines {
		if strings.Contains(l, `step.hold["n1"]:   `) {
			waits++
		}
	}
	assert.LessOrEqual(t, waits, 1+6/5, "wait lines of a 6 s step: %v", lines)
	assert.Contains(t, text, "\nNodes:\n", "the summary table")
	assert.Regexp(t, `(?m)^  n1\s+1/1\s+done\s+\d+\.\ds\s+hold \d+\.\ds$`, text)
}
