package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/dbgen"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/dbkit"
)

// smallSteps makes a small database's copy take many steps, each
// reported.
func smallSteps(t *testing.T) {
	oldEvery, oldPages := dbkit.ProgressEvery, stepPages
	dbkit.ProgressEvery, stepPages = time.Millisecond, 8
	t.Cleanup(func() { dbkit.ProgressEvery, stepPages = oldEvery, oldPages })
}

func generated(t *testing.T, n dbgen.Size) string {
	path := filepath.Join(t.TempDir(), "a.sqlite")
	require.NoError(t, dbgen.SQLite(context.Background(), path, n))
	return path
}

func summary(t *testing.T, path string) dbgen.Summary {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	s, err := dbgen.SQLiteSummary(context.Background(), db)
	require.NoError(t, err)
	return s
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (p *lines) add(l string) { p.mu.Lock(); p.l = append(p.l, l); p.mu.Unlock() }
func (p *lines) matching(re *regexp.Regexp) (out []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.l {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

var meterLine = regexp.MustCompile(`^(copy|backup): \S+ \S+ of \S+ \S+ \(\d+%\), \S+ \S+/s`)

func TestBackupAndCopyAreExactWithProgress(t *testing.T) {
	smallSteps(t)
	a := generated(t, 3000)
	want := summary(t, a)
	require.Len(t, want.Indexes, 4)
	p := configured(t, a)

	for _, action := range []string{"backup", "copy"} {
		t.Run(action, func(t *testing.T) {
			to := filepath.Join(t.TempDir(), "b.sqlite")
			var got lines
			// The file copy of a small A is over in milliseconds: its
			// first step waits for a report, so that one is made.
			var once sync.Once
			afterStep = func(context.Context) {
				once.Do(func() {
					deadline := time.Now().Add(10 * time.Second)
					for len(got.matching(meterLine)) == 0 && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
				})
			}
			t.Cleanup(func() { afterStep = nil })
			args := map[string]cty.Value{"to": cty.StringVal(to)}
			if action == "copy" {
				args["replace"] = cty.NullVal(cty.Bool)
			}
			r := p.Invoke(context.Background(), plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args), Progress: got.add})
			require.False(t, r.Diagnostics.HasErrors(), "%v", r.Diagnostics.Err())
			assert.Equal(t, want, summary(t, to), "rows, checksums, indexes and sequences as in A")
			assert.NotEmpty(t, got.matching(meterLine), "progress with done, total, percent and rate: %q", got.l)
			_, err := os.Stat(to + ".upshift-tmp")
			assert.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func TestCancelledCopyLeavesNothing(t *testing.T) {
	smallSteps(t)
	a := generated(t, 3000)
	p := configured(t, a)
	b := filepath.Join(filepath.Dir(a), "b.sqlite")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled after the first step, and the copy waits until the
	// cancellation has reached it: a copy in the middle, every time.
	var once sync.Once
	afterStep = func(stepCtx context.Context) {
		once.Do(func() {
			cancel()
			select {
			case <-stepCtx.Done():
			case <-time.After(10 * time.Second):
			}
		})
	}
	t.Cleanup(func() { afterStep = nil })
	r := p.Invoke(ctx, plugins.InvokeRequest{Action: "copy", Args: cty.ObjectVal(map[string]cty.Value{"to": cty.StringVal(b), "replace": cty.NullVal(cty.Bool), "run_id": cty.StringVal("run-1")})})
	require.True(t, r.Diagnostics.HasErrors(), "a cancelled copy fails")
	// The host's call returns at once; the plugin cleans up as it unwinds.
	assert.Eventually(t, func() bool {
		left, _ := filepath.Glob(b + "*")
		return len(left) == 0
	}, 10*time.Second, 10*time.Millisecond, "no B, no temporary file, no marker claiming B for the run")
}
