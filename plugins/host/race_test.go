package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/host"
)

// TestSwappedBinaryNeverRuns: while a loop keeps swapping the plugin's path
// between the pinned binary and another program (rename over it, as an
// attacker with write access to the folder would), every launch either runs
// the pinned binary or refuses; the other program never runs. The binary is
// hashed and executed from one private copy, so there is no window between
// the check and the exec.
func TestSwappedBinaryNeverRuns(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "swapped-binary-ran")
	good := filepath.Join(dir, "good")
	evil := filepath.Join(dir, "evil")
	src, err := os.ReadFile(testkitPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(good, src, 0o755))
	require.NoError(t, os.WriteFile(evil, []byte("#!/bin/sh\necho ran >> '"+marker+"'\n"), 0o755))
	path := filepath.Join(dir, host.BinaryName("testkit"))
	require.NoError(t, os.Link(good, path))

	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		tmp := filepath.Join(dir, "tmp")
		for i := 0; i < 10_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			from := good
			if i%2 == 0 {
				from = evil
			}
			_ = os.Remove(tmp)
			if os.Link(from, tmp) == nil && os.Rename(tmp, path) == nil {
				n++
			}
		}
	}()

	const launches = 30
	deadline := time.Now().Add(60 * time.Second)
	var ok, refused, other int
	for i := 0; i < launches && time.Now().Before(deadline); i++ {
		p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: path, SHA256: testkitSum, Logger: hclog.NewNullLogger()})
		switch {
		case err == nil:
			ok++
			assert.Equal(t, "0.1.0", p.(*host.Process).Version(), "a launch that succeeds runs the pinned testkit")
			_ = p.Close()
		case errors.Is(err, host.ErrChecksumMismatch):
			refused++
		default:
			other++
			t.Logf("launch %d: %v", i, err)
		}
	}
	close(stop)
	swaps := <-swapped
	t.Logf("%d launches under %d swaps: %d ran the pinned binary, %d refused (checksum), %d other errors", ok+refused+other, swaps, ok, refused, other)
	_, statErr := os.Stat(marker)
	if statErr == nil {
		b, _ := os.ReadFile(marker)
		t.Errorf("the swapped-in program ran %d times", len(b)/len("ran\n"))
	}
	assert.Greater(t, swaps, 0, "the loop swapped the binary")
	assert.Equal(t, 0, other, "every launch either ran the pinned binary or refused it")
}
