package main

import (
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner/journal"
)

func TestPickRun(t *testing.T) {
	runs := fakeRuns("20261205T090000Z-aaaa", "20261204T090000Z-bbbb", "20261204T100000Z-cccc")
	r, err := pickRun(runs, "")
	require.NoError(t, err)
	assert.Equal(t, "20261205T090000Z-aaaa", r.ID, "the current run by default")
	r, err = pickRun(runs, "20261204T090000Z")
	require.NoError(t, err)
	assert.Equal(t, "20261204T090000Z-bbbb", r.ID, "a unique prefix")
	_, err = pickRun(runs, "20261204")
	assert.ErrorContains(t, err, "names 2 runs")
	_, err = pickRun(runs, "x")
	assert.ErrorContains(t, err, `no run "x"; the runs are: 20261205T090000Z-aaaa`)
}

// TestReportOf50Nodes makes a real 50-node run (the testkit plugin, five
// items at a time) and its report. With UPSHIFT_REPORT_PNG set (`make
// report-check`) it also screenshots the page in headless Chromium and
// logs the picture's figures.
func TestReportOf50Nodes(t *testing.T) {
	needBinaries(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "kitstate")
	require.NoError(t, os.MkdirAll(state, 0o755))
	var nodes []string
	for i := 1; i <= 50; i++ {
		nodes = append(nodes, fmt.Sprintf(`{ name = "node-%d" }`, i))
	}
	src := fmt.Sprintf(`
node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = %q
  }
  nodes = [%s]
}

step "read_only" {
  run = node_pool.kit.sleep
  with {
    duration = "300ms"
  }
}

rollout "upgrade" {
  over         = node_pool.kit.nodes
  max_parallel = 5
  depends_on   = [step.read_only]
  step "drain" {
    run = node_pool.kit.sleep
    with {
      duration = "250ms"
    }
  }
  step "restart" {
    run = node_pool.kit.sleep
    with {
      duration = "100ms"
    }
  }
  step "healthy" {
    run = node_pool.kit.sleep
    with {
      duration = "300ms"
    }
  }
  step "enable" {
    run = node_pool.kit.sleep
    with {
      duration = "150ms"
    }
  }
}
`, state, strings.Join(nodes, ",\n    "))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	initPlaybook(t, dir)
	runOK(t, "run", dir)

	html := filepath.Join(dir, "report.html")
	out := runOK(t, "report", dir, "-o", html)
	require.Contains(t, out, "51 rows")
	b, err := os.ReadFile(html)
	require.NoError(t, err)
	page := string(b)
	meta := regexp.MustCompile(`<meta name="upshift-report" content="([^"]*)">`).FindStringSubmatch(page)
	require.NotNil(t, meta)
	assert.Contains(t, meta[1], "rows=51 row_height=18 min_font_px=11")
	assert.Contains(t, meta[1], "labels_overlap=false")
	for i := 1; i <= 50; i++ {
		assert.Contains(t, page, fmt.Sprintf(">node-%d</text>", i))
	}
	assert.NotContains(t, page, "<script")

	shot := os.Getenv("UPSHIFT_REPORT_PNG")
	if shot == "" {
		return
	}
	chromium, err := exec.LookPath("chromium")
	require.NoError(t, err, "make report-check needs Debian's chromium (apt-get install -y chromium)")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const winW, winH = 1280, 1500
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", winW, winH), "file://"+html)
	cout, err := cmd.CombinedOutput()
	require.NoError(t, err, "chromium:\n%s", cout)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	size := img.Bounds().Size()
	assert.Equal(t, winW, size.X)
	t.Logf("report-check: %s: %dx%d px PNG of %s; %s", shot, size.X, size.Y, html, meta[1])
	_ = os.WriteFile(strings.TrimSuffix(shot, ".png")+".html", b, 0o644)
}

func fakeRuns(ids ...string) []*journal.Run {
	var out []*journal.Run
	for _, id := range ids {
		out = append(out, &journal.Run{ID: id})
	}
	return out
}
