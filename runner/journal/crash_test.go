package journal

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCrashAtRandomMoments kills a process that is updating the journal with
// SIGKILL at random moments, resuming the same journal each trial. After every
// kill the journal must load, hold exactly the state after some k updates,
// and k must cover every update the helper saw acknowledged.
func TestCrashAtRandomMoments(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns helper processes")
	}
	const trials = 30
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	deadline := time.Now().Add(12 * time.Second)

	var total, lastK, trial int
	for ; trial < trials && time.Now().Before(deadline); trial++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=update", helperDirEnv+"="+dir)
		if trial%2 == 1 {
			cmd.Env = append(cmd.Env, helperNoSyncEnv+"=1")
		}
		out := &ackWriter{first: make(chan struct{})}
		var errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &errOut
		require.NoError(t, cmd.Start())
		if trial%3 != 0 {
			// Most kills land in the update loop; the others anywhere,
			// including startup and the compaction a resume does.
			select {
			case <-out.first:
			case <-time.After(3 * time.Second):
			}
		}
		time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		err := cmd.Wait()
		require.Error(t, err, "helper finished its bounded loop before the kill; stderr: %s", errOut.String())

		acked := lastAck(out.String())
		run, err := mustOpen(t, dir).Load()
		require.NoError(t, err, "trial %d: journal must load after SIGKILL", trial)
		k := crashProgress(run)
		require.GreaterOrEqual(t, k, acked, "trial %d: an acknowledged update was lost", trial)
		require.GreaterOrEqual(t, k, lastK, "trial %d: the journal went backwards", trial)
		if run != nil {
			require.Equal(t, crashState(k), run.Steps, "trial %d: not the state after %d updates", trial, k)
		}
		total += k - lastK
		lastK = k

		// SIGKILL rarely tears an append (the kernel finishes most writes
		// first); a power cut can. Leave the start of the next record in
		// the log now and then, for this Load and the next helper to face.
		if run != nil && trial%3 == 2 {
			stepJSON, err := marshalStep(nil, &[]Step{crashStep(k)}[0])
			require.NoError(t, err)
			line := appendRecord(nil, uint64(k+1), []byte(`"crash"`), time.Now(), stepJSON)
			tornLine := line[:1+rng.IntN(len(line)-1)]
			f, err := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			_, err = f.Write(tornLine)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			run, err := mustOpen(t, dir).Load()
			require.NoError(t, err, "trial %d: torn last line must be ignored", trial)
			require.Equal(t, crashState(k), run.Steps)
		}
	}
	require.GreaterOrEqual(t, trial, 20, "too few trials before the deadline")
	require.Positive(t, total, "no update survived any trial")
	t.Logf("%d trials, %d updates", trial, total)
}

// lastAck returns the last complete number the helper printed: the count of
// updates whose Update call returned. A line cut by the kill is not counted.
func lastAck(out string) int {
	out = out[:strings.LastIndexByte(out, '\n')+1]
	lines := strings.Fields(out)
	if len(lines) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(lines[len(lines)-1])
	return n
}

// ackWriter collects the helper's output and signals its first line.
type ackWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan struct{}
	seen  bool
}

func (w *ackWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen && bytes.IndexByte(p, '\n') >= 0 {
		w.seen = true
		close(w.first)
	}
	return w.buf.Write(p)
}

func (w *ackWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
