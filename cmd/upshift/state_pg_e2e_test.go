package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	mrand "math/rand"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
	"github.com/upshift-dev/upshift/runner/journal"
)

// pgState is a throwaway PostgreSQL for a test's state, and the
// environment that points upshift at it: the DSN without its password,
// the password and the sealing key in files of their own.
type pgState struct {
	srv  *postgresd.Server
	dir  string // the server's folder, to start it again after a Stop
	port int
	dsn  string // no password
	env  []string
	cfg  journal.PGConfig
}

func startPGState(t *testing.T) *pgState {
	t.Helper()
	needBinaries(t)
	dir := t.TempDir()
	srv, err := postgresd.Start(context.Background(), postgresd.Options{Dir: filepath.Join(dir, "pg")})
	require.NoError(t, err)
	p := &pgState{srv: srv, dir: filepath.Join(dir, "pg"), port: srv.Port}
	t.Cleanup(func() { _ = p.srv.Stop() })
	u, err := url.Parse(srv.DSN("postgres"))
	require.NoError(t, err)
	u.User = url.User(srv.User)
	p.dsn = u.String()
	pw := filepath.Join(dir, "state.password")
	require.NoError(t, os.WriteFile(pw, []byte(srv.Password+"\n"), 0o600))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kf := filepath.Join(dir, "state.key")
	require.NoError(t, os.WriteFile(kf, []byte(hex.EncodeToString(key)+"\n"), 0o600))
	p.env = []string{"UPSHIFT_STATE=postgres", "UPSHIFT_STATE_DSN=" + p.dsn, "UPSHIFT_STATE_PASSWORD_FILE=" + pw, "UPSHIFT_STATE_KEY_FILE=" + kf}
	p.cfg = journal.PGConfig{DSN: p.dsn, Password: srv.Password, Key: key}
	return p
}

// restart starts the stopped server again, on the same port and data.
func (p *pgState) restart(t *testing.T) {
	t.Helper()
	srv, err := postgresd.Start(context.Background(), postgresd.Options{Dir: p.dir, Port: p.port})
	require.NoError(t, err)
	p.srv = srv
}

// upshiftPG is upshift with the state in p.
func upshiftPG(t *testing.T, p *pgState, args ...string) *exec.Cmd {
	cmd := upshift(t, args...)
	cmd.Env = append(cmd.Env, p.env...)
	return cmd
}

// current is the current run of the one cluster p holds.
func (p *pgState) current(t *testing.T) *journal.Run {
	t.Helper()
	s, err := journal.OpenPG(context.Background(), p.cfg)
	require.NoError(t, err)
	defer s.Close()
	all, err := s.Clusters(context.Background())
	require.NoError(t, err)
	require.Len(t, all, 1)
	return all[0].Current
}

// TestPGStateSecondRunnerRefused: two checkouts of one playbook, each with
// its own state folder, both keeping state in one PostgreSQL: while the
// first runs, the second is refused (exit 6), naming the holder, its host
// and since when. With state folders alone nothing would stop it (the
// testkit cluster has no database to lock).
func TestPGStateSecondRunnerRefused(t *testing.T) {
	p := startPGState(t)
	dir, _ := kitPlaybook(t, 1, `
step "long" {
  run = node_pool.kit.sleep
  with {
    duration = "4s"
  }
}
`)
	other := t.TempDir()
	src, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(other, "main.hcl"), src, 0o644))
	initPlaybook(t, dir)
	initPlaybook(t, other)

	first := upshiftPG(t, p, "run", dir)
	var out syncBuffer
	first.Stdout, first.Stderr = &out, &out
	require.NoError(t, first.Start())
	defer func() { _ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL); _ = first.Wait() }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "step.long") }, 20*time.Second, 20*time.Millisecond, "%s", &out)

	second, err := upshiftPG(t, p, "run", other).CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitLocked, second2code(err), "%s", second)
	host, _ := os.Hostname()
	assert.Contains(t, string(second), "another upshift run holds the lock on cluster")
	assert.Contains(t, string(second), fmt.Sprintf("pid %d (", first.Process.Pid))
	assert.Contains(t, string(second), "@"+host+", since ")
	assert.NotContains(t, string(second), p.srv.Password)

	require.NoError(t, first.Wait(), "%s", &out)
	// The first finished: its run is in PostgreSQL, with who ran it.
	run := p.current(t)
	assert.Equal(t, journal.Done, run.Status)
	require.NotNil(t, run.Audit)
	assert.Equal(t, host, run.Audit.Host)
	// And the second checkout now finds it finished.
	again := runOKPG(t, p, "run", other)
	assert.Contains(t, again, "Nothing to do")
	status := runOKPG(t, p, "status", other)
	assert.Contains(t, status, "begun by ")
	assert.Contains(t, status, "@"+host+" with upshift ")
}

func runOKPG(t *testing.T, p *pgState, args ...string) string {
	t.Helper()
	out, err := upshiftPG(t, p, args...).CombinedOutput()
	require.NoError(t, err, "upshift %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// TestPGStateCrashAndResume is TestCrashAndResume with the journal in
// PostgreSQL: 20 trials of runs killed with SIGKILL at random moments and
// resumed until they finish; every non-idempotent step ran exactly once
// and the run ends complete.
func TestPGStateCrashAndResume(t *testing.T) {
	p := startPGState(t)
	const trials = 20
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	rng := mrand.New(mrand.NewSource(n.Int64()))
	s, err := journal.OpenPG(context.Background(), p.cfg)
	require.NoError(t, err)
	defer s.Close()
	kills := 0
	for trial := 0; trial < trials; trial++ {
		dir, state := kitPlaybook(t, 4, "")
		initPlaybook(t, dir)
		finished := false
		killsThisTrial := 1 + rng.Intn(4)
		for attempt := 0; attempt <= killsThisTrial && !finished; attempt++ {
			cmd := upshiftPG(t, p, "run", dir, "--json")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			window := time.Duration(30+rng.Intn(300)) * time.Millisecond
			if attempt == killsThisTrial {
				window = 2 * time.Minute
			}
			select {
			case err := <-done:
				require.NoError(t, err, "an uninterrupted run must succeed:\n%s", out.String())
				finished = true
			case <-time.After(window):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				kills++
			}
		}
		require.True(t, finished, "trial %d never finished", trial)
		counts := recordCounts(t, state)
		for i := 1; i <= 4; i++ {
			for _, step := range []string{"first", "second"} {
				key := fmt.Sprintf("%s-n%d", step, i)
				assert.Equal(t, 1, counts[key], "trial %d: %s ran %d times", trial, key, counts[key])
			}
		}
		// This trial's cluster (its testkit state folder makes it one of
		// its own) is done in PostgreSQL, every step done.
		all, err := s.Clusters(context.Background())
		require.NoError(t, err)
		var run *journal.Run
		for _, c := range all {
			for _, r := range c.Cluster.Resources {
				if r.Fields["config.state_dir"] == state {
					run = c.Current
				}
			}
		}
		require.NotNil(t, run, "trial %d: no run of its cluster in PostgreSQL", trial)
		assert.Equal(t, journal.Done, run.Status)
		require.Len(t, run.Steps, 12)
		for addr, st := range run.Steps {
			assert.Equal(t, journal.Done, st.Status, "trial %d: %s", trial, addr)
		}
		_, err = os.Stat(filepath.Join(dir, ".upshift", "state", "clusters"))
		assert.ErrorIs(t, err, os.ErrNotExist, "nothing of the run may be kept in the state folder")
	}
	t.Logf("%d trials, %d kills", trials, kills)
	assert.GreaterOrEqual(t, kills, trials)
}

// slowPlaybook: six items one after the other, each recording, sleeping
// and recording again: a run long enough to lose its backend in.
func slowPlaybook(t *testing.T) (dir, state string) {
	dir, state = kitPlaybook(t, 6, "")
	b, err := os.ReadFile(filepath.Join(dir, "main.hcl"))
	require.NoError(t, err)
	src := strings.Replace(strings.Replace(string(b), `duration = "50ms"`, `duration = "700ms"`, 1), "max_parallel = 2", "max_parallel = 1", 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	return dir, state
}

func totalRecords(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// TestPGStateBackendStoppedMidRun stops the real PostgreSQL during a run:
// while it is away no new step starts; started again within the retry
// bound, the run finishes as if nothing happened. Away for longer than the
// bound, the run stops saying so, and a second `upshift run` resumes it
// exactly: every step ran once.
func TestPGStateBackendStoppedMidRun(t *testing.T) {
	p := startPGState(t)

	t.Run("back within the bound", func(t *testing.T) {
		dir, state := slowPlaybook(t)
		initPlaybook(t, dir)
		cmd := upshiftPG(t, p, "run", dir)
		cmd.Env = append(cmd.Env, "UPSHIFT_STATE_RETRY=60s")
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
		require.Eventually(t, func() bool { return recordCounts(t, state)["first-n2"] == 1 }, 30*time.Second, 10*time.Millisecond)
		require.NoError(t, p.srv.Stop())
		// A step running may finish; then nothing new starts.
		time.Sleep(1500 * time.Millisecond)
		during := totalRecords(recordCounts(t, state))
		time.Sleep(2500 * time.Millisecond)
		assert.Equal(t, during, totalRecords(recordCounts(t, state)), "a step started while the state backend was away")
		p.restart(t)
		require.NoError(t, cmd.Wait(), "%s", &out)
		for i := 1; i <= 6; i++ {
			for _, step := range []string{"first", "second"} {
				key := fmt.Sprintf("%s-n%d", step, i)
				assert.Equal(t, 1, recordCounts(t, state)[key], "%s", key)
			}
		}
	})

	t.Run("away past the bound", func(t *testing.T) {
		dir, state := slowPlaybook(t)
		initPlaybook(t, dir)
		cmd := upshiftPG(t, p, "run", dir)
		cmd.Env = append(cmd.Env, "UPSHIFT_STATE_RETRY=2s")
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
		require.Eventually(t, func() bool { return recordCounts(t, state)["first-n2"] == 1 }, 30*time.Second, 10*time.Millisecond)
		require.NoError(t, p.srv.Stop())
		err := cmd.Wait()
		require.Error(t, err, "%s", &out)
		assert.Equal(t, exitFailed, second2code(err), "%s", &out)
		assert.Contains(t, out.String(), "state backend unreachable")
		assert.Contains(t, out.String(), "nothing is lost")
		assert.Contains(t, out.String(), "upshift run "+dir)
		assert.NotContains(t, out.String(), p.srv.Password)
		p.restart(t)
		res, err := upshiftPG(t, p, "run", dir).CombinedOutput()
		require.NoError(t, err, "%s", res)
		assert.Contains(t, string(res), "resuming")
		for i := 1; i <= 6; i++ {
			for _, step := range []string{"first", "second"} {
				key := fmt.Sprintf("%s-n%d", step, i)
				assert.Equal(t, 1, recordCounts(t, state)[key], "%s ran %d times", key, recordCounts(t, state)[key])
			}
		}
	})
}

// TestPGStateMigrateBothWays: a run interrupted with state in the state
// folder is moved into PostgreSQL, resumed from there to the end, and
// moved back; each side then says what the other said, and the finished
// run stays finished.
func TestPGStateMigrateBothWays(t *testing.T) {
	p := startPGState(t)
	dir, state := slowPlaybook(t)
	initPlaybook(t, dir)
	cmd := upshift(t, "run", dir)
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return recordCounts(t, state)["second-n2"] == 1 }, 30*time.Second, 10*time.Millisecond)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	local := currentRun(t, filepath.Join(dir, ".upshift", "state"))
	require.True(t, local.Resumable())

	out := runOKPG(t, p, "state", "migrate", dir, "--to", "postgres")
	assert.Contains(t, out, "current run "+local.ID)
	moved := p.current(t)
	assert.Equal(t, local.ID, moved.ID)
	assert.Equal(t, len(local.Steps), len(moved.Steps))
	for addr, st := range local.Steps {
		assert.Equal(t, st.Status, moved.Steps[addr].Status, addr)
	}
	// The state folder holds it no more: a run without the backend would
	// begin afresh, so the folder kept aside is not a cluster's.
	store, err := journal.OpenStore(filepath.Join(dir, ".upshift", "state"))
	require.NoError(t, err)
	cs, err := store.Clusters()
	require.NoError(t, err)
	assert.Empty(t, cs)

	res := runOKPG(t, p, "run", dir)
	assert.Contains(t, res, "resuming")
	for i := 1; i <= 6; i++ {
		for _, step := range []string{"first", "second"} {
			key := fmt.Sprintf("%s-n%d", step, i)
			assert.Equal(t, 1, recordCounts(t, state)[key], "%s", key)
		}
	}
	done := p.current(t)
	assert.Equal(t, journal.Done, done.Status)

	out = runOKPG(t, p, "state", "migrate", dir, "--to", "local")
	assert.Contains(t, out, "current run "+done.ID)
	back := currentRun(t, filepath.Join(dir, ".upshift", "state"))
	assert.Equal(t, done.ID, back.ID)
	assert.Equal(t, journal.Done, back.Status)
	require.Equal(t, len(done.Steps), len(back.Steps))
	for addr, st := range done.Steps {
		assert.Equal(t, st.Status, back.Steps[addr].Status, addr)
		assert.Equal(t, st.Attempts, back.Steps[addr].Attempts, addr)
	}
	assert.Equal(t, done.Audit, back.Audit)
	// The finished run stays finished, locally now.
	assert.Contains(t, runOK(t, "run", dir), "Nothing to do")
}

// TestPGStateFromPlaybookBlock: the playbook's state block chooses
// PostgreSQL (its DSN has no password); the password and key files come
// from the environment; nothing is kept in the state folder.
func TestPGStateFromPlaybookBlock(t *testing.T) {
	p := startPGState(t)
	dir, state := kitPlaybook(t, 2, fmt.Sprintf(`
state {
  backend = "postgres"
  dsn     = %q
}
`, p.dsn))
	initPlaybook(t, dir)
	secrets := func(cmd *exec.Cmd) *exec.Cmd {
		for _, e := range p.env {
			if strings.HasPrefix(e, "UPSHIFT_STATE_PASSWORD_FILE=") || strings.HasPrefix(e, "UPSHIFT_STATE_KEY_FILE=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		return cmd
	}
	out, err := secrets(upshift(t, "run", dir)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, 1, recordCounts(t, state)["second-n2"])
	run := p.current(t)
	assert.Equal(t, journal.Done, run.Status)
	_, err = os.Stat(filepath.Join(dir, ".upshift", "state", "clusters"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing of the run may be kept in the state folder")
	// status reads the block too.
	status, err := secrets(upshift(t, "status", dir)).CombinedOutput()
	require.NoError(t, err, "%s", status)
	assert.Contains(t, string(status), "run "+run.ID+": done")
}
