package journal

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// startHelper runs this test binary as a helper process in mode, with env
// added; its output is collected.
func startHelper(t *testing.T, mode string, env map[string]string) (*exec.Cmd, *ackWriter) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &ackWriter{first: make(chan struct{})}
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errOut
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("helper %s stderr: %s", mode, errOut.String())
		}
	})
	return cmd, out
}

func waitLine(t *testing.T, out *ackWriter, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), want+"\n") }, 15*time.Second, 10*time.Millisecond, "helper never printed %q", want)
}

// helperPGOpen opens the journal of the crash cluster in the database the
// test names.
func helperPGOpen() (*Journal, *PGStore, error) {
	key, err := hex.DecodeString(os.Getenv(helperKeyEnv))
	if err != nil {
		return nil, nil, err
	}
	s, err := OpenPG(context.Background(), PGConfig{DSN: os.Getenv(helperDSNEnv), Key: key})
	if err != nil {
		return nil, nil, err
	}
	c := pgCluster(crashClusterID)
	if err := s.Register(context.Background(), c); err != nil {
		return nil, nil, err
	}
	return s.Journal(c), s, nil
}

const crashClusterID = "c0ffee00c0ffee00"

// helperPGUpdate is helperUpdate against PostgreSQL: resume (or begin)
// the crash run, then Record/Update in a tight loop, printing the count
// of acknowledged (committed) updates.
func helperPGUpdate() error {
	j, _, err := helperPGOpen()
	if err != nil {
		return err
	}
	run, err := j.Load()
	if err != nil {
		return err
	}
	if run == nil {
		if err := j.Begin(&Run{ID: "crash", Playbook: "p", Steps: map[string]*Step{}}); err != nil {
			return err
		}
	}
	for i := crashProgress(run); i < crashMaxUpdates; i++ {
		s := crashStep(i)
		if s.Status == Running {
			if err := j.Record(s); err != nil {
				return err
			}
			continue
		}
		if err := j.Update(s); err != nil {
			return err
		}
		fmt.Printf("%d\n", i+1)
	}
	return nil
}

// helperPGLock holds the run lock of the cluster named by helperDirEnv
// until killed (or 30 s pass).
func helperPGLock() error {
	s, err := OpenPG(context.Background(), PGConfig{DSN: os.Getenv(helperDSNEnv)})
	if err != nil {
		return err
	}
	c := pgCluster(os.Getenv(helperDirEnv))
	l, err := s.Acquire(context.Background(), c, Owner{Command: "upshift run playbooks/rolling-upgrade"})
	if err != nil {
		return err
	}
	fmt.Println("locked")
	time.Sleep(30 * time.Second)
	return l.Release()
}

// TestPGCrashAtRandomMoments is TestCrashAtRandomMoments against
// PostgreSQL: 20 SIGKILLs at random moments of a Record/Update loop, each
// followed by a resume. After every kill the run must load, hold exactly
// the state after some k updates, with k covering every acknowledged
// update and never going back.
func TestPGCrashAtRandomMoments(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	key := testKey(t)
	const trials = 20
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	env := map[string]string{helperDSNEnv: dsn, helperKeyEnv: hex.EncodeToString(key)}
	s := openTestPG(t, dsn, key)
	c := pgCluster(crashClusterID)

	var total, lastK int
	for trial := 0; trial < trials; trial++ {
		cmd, out := startHelper(t, "pgupdate", env)
		if trial%4 != 0 {
			select {
			case <-out.first:
			case <-time.After(10 * time.Second):
			}
		}
		time.Sleep(time.Duration(rng.IntN(80_000)) * time.Microsecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, cmd.Wait(), "helper finished its bounded loop before the kill")

		acked := lastAck(out.String())
		run, err := s.Journal(c).Load()
		require.NoError(t, err, "trial %d: the run must load after SIGKILL", trial)
		k := crashProgress(run)
		require.GreaterOrEqual(t, k, acked, "trial %d: an acknowledged update was lost", trial)
		require.GreaterOrEqual(t, k, lastK, "trial %d: the run went backwards", trial)
		if run != nil {
			// A Record committed with the last transaction counts among
			// the k updates too (crashProgress reads the highest attempt).
			require.Equal(t, crashState(k), run.Steps, "trial %d: not the state after %d updates", trial, k)
		}
		total += k - lastK
		lastK = k
	}
	require.Positive(t, total, "no update survived any trial")
	t.Logf("%d trials, %d updates", trials, total)
}

// TestPGUnreachableMidRun stops the real server while a writer updates,
// and starts it again: the writes waiting meanwhile (an Update, and a
// Record, so no new step would start) commit once it is back, and nothing
// acknowledged is lost. With the server gone past the retry bound, the
// write fails with an *UnreachableError and every later one too.
func TestPGUnreachableMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := postgresd.Start(ctx, postgresd.Options{Dir: dir})
	require.NoError(t, err)
	port := srv.Port
	defer func() { _ = srv.Stop() }()
	dsn := srv.DSN("postgres")
	key := testKey(t)
	s, err := OpenPG(ctx, PGConfig{DSN: dsn, Key: key, Retry: 40 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	c := pgCluster("dead00beef00dead")
	require.NoError(t, s.Register(ctx, c))
	l, err := s.Acquire(ctx, c, Owner{})
	require.NoError(t, err)
	defer l.Release()
	j := s.Journal(c)
	j.WithLock(l, nil)
	require.NoError(t, j.Begin(&Run{ID: "r1", Steps: map[string]*Step{}}))
	require.NoError(t, j.Update(crashStep(1)))

	require.NoError(t, srv.Stop())
	done := make(chan error, 2)
	go func() { done <- j.Update(crashStep(3)) }()
	time.Sleep(300 * time.Millisecond)
	go func() { done <- j.Record(crashStep(4)) }()
	select {
	case err := <-done:
		t.Fatalf("a write returned while the server was down: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	srv, err = postgresd.Start(ctx, postgresd.Options{Dir: dir, Port: port})
	require.NoError(t, err)
	for range 2 {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(45 * time.Second):
			t.Fatal("the writes did not complete once the server was back")
		}
	}
	require.NoError(t, j.Sync())
	got, err := s.Journal(c).Load()
	require.NoError(t, err)
	require.Equal(t, Done, got.Steps[crashStep(3).Address].Status)
	require.Equal(t, Running, got.Steps[crashStep(4).Address].Status)
	// The lock was taken again on a new session once the server was back:
	// a second runner is refused.
	require.Eventually(t, func() bool {
		_, err := s.Acquire(ctx, c, Owner{})
		var held *HeldError
		return errors.As(err, &held)
	}, 10*time.Second, 200*time.Millisecond)

	// Past the bound: a clear error, and the journal stays broken.
	s2, err := OpenPG(ctx, PGConfig{DSN: dsn, Key: key, Retry: 1500 * time.Millisecond})
	require.NoError(t, err)
	defer s2.Close()
	j2 := s2.Journal(c)
	require.NoError(t, j2.Update(crashStep(5)))
	broken := make(chan error, 1)
	j2.WithLock(nil, func(err error) { broken <- err })
	require.NoError(t, srv.Stop())
	err = j2.Update(crashStep(7))
	var un *UnreachableError
	require.ErrorAs(t, err, &un)
	require.Contains(t, err.Error(), "state backend unreachable")
	require.ErrorAs(t, <-broken, &un)
	srv, err = postgresd.Start(ctx, postgresd.Options{Dir: dir, Port: port})
	require.NoError(t, err)
	require.ErrorAs(t, j2.Update(crashStep(9)), &un, "a broken journal must not write again")
}
