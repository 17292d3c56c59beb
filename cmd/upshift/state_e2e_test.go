package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
	"github.com/upshift-dev/upshift/runner/journal"
)

// clusterPlaybook is a testkit playbook whose cluster is the kit folder
// given by a variable, so that one playbook folder can point at two
// clusters; step.flaky fails var.failures times.
func clusterPlaybook(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := `
variable "kit_dir" {
  type = string
}
variable "failures" {
  type    = number
  default = 0
}
variable "token" {
  type      = string
  sensitive = true
  default   = "none"
}
node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = var.kit_dir
  }
  nodes = [{ name = "n1" }, { name = "n2" }]
}
step "first" {
  for_each = { for n in node_pool.kit.nodes : n.name => n }
  run      = node_pool.kit.record
  with {
    key = "first-${each.key}"
  }
}
step "flaky" {
  run        = node_pool.kit.flaky
  depends_on = [step.first]
  with {
    key      = "k"
    failures = var.failures
  }
}
step "backup" {
  run        = node_pool.kit.record
  depends_on = [step.flaky]
  with {
    key = "backup-${run.id}"
  }
}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	return dir
}

// finishedKitRun runs clusterPlaybook to the end on a kit folder of its
// own; it returns the playbook, the kit folder and the state folder.
func finishedKitRun(t *testing.T) (dir, kit, state string) {
	t.Helper()
	needBinaries(t)
	dir = clusterPlaybook(t)
	kit = filepath.Join(t.TempDir(), "kit")
	initPlaybook(t, dir, "-var", "kit_dir="+kit)
	runOK(t, "run", dir, "-var", "kit_dir="+kit)
	return dir, kit, filepath.Join(dir, ".upshift", "state")
}

func runCode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := upshift(t, args...).CombinedOutput()
	if err == nil {
		return string(out), 0
	}
	code := second2code(err)
	require.NotEqual(t, -1, code, "upshift %s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out), code
}

// TestRunBelongsToItsCluster: a failed run on cluster F is never adopted
// by a run of cluster G from the same playbook folder; G's first run is
// refused (both identities and what differs named, nothing changed) until
// --new-run says G is another cluster, and then runs from scratch, leaving
// F's journal untouched; F then resumes; status shows both.
func TestRunBelongsToItsCluster(t *testing.T) {
	needBinaries(t)
	dir := clusterPlaybook(t)
	f, g := filepath.Join(t.TempDir(), "f"), filepath.Join(t.TempDir(), "g")
	initPlaybook(t, dir, "-var", "kit_dir="+f)

	out, code := runCode(t, "run", dir, "-var", "kit_dir="+f, "-var", "failures=1")
	require.Equal(t, exitFailed, code, out)
	state := filepath.Join(dir, ".upshift", "state")
	fDir := clusterDir(t, state)
	fJournal, err := os.ReadFile(filepath.Join(fDir, "run.json"))
	require.NoError(t, err)
	fShort := filepath.Base(fDir)

	out, code = runCode(t, "run", dir, "-var", "kit_dir="+g)
	assert.Equal(t, exitRefused, code, out)
	assert.Contains(t, out, "another cluster there has an unfinished run")
	assert.Contains(t, out, "cluster "+fShort)
	assert.Regexp(t, `this playbook points at cluster [0-9a-f]{12}`, out)
	assert.Contains(t, out, "node_pool.kit config.state_dir: "+fmt.Sprintf("%q", f))
	assert.Contains(t, out, "Nothing was changed")
	assert.Empty(t, recordCounts(t, g), "nothing ran on G")

	out, code = runCode(t, "run", dir, "-var", "kit_dir="+g, "--new-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Plan: 4 steps", "a new run shows its plan first")
	assert.Contains(t, out, "Note: this state folder also holds an unfinished run of another cluster "+fShort)
	assert.Contains(t, out, "running 4 steps", "G runs from scratch")
	gc := recordCounts(t, g)
	assert.Equal(t, 1, gc["first-n1"])
	assert.Equal(t, 1, gc["first-n2"])
	after, err := os.ReadFile(filepath.Join(fDir, "run.json"))
	require.NoError(t, err)
	assert.Equal(t, string(fJournal), string(after), "F's journal is untouched")

	status := runOK(t, "status", dir)
	assert.Equal(t, 2, strings.Count(status, "Cluster "), status)
	assert.Contains(t, status, "Cluster "+fShort)
	assert.Contains(t, status, "upshift abort "+dir+" --cluster "+fShort)

	out = runOK(t, "run", dir, "-var", "kit_dir="+f)
	assert.Contains(t, out, "resuming an interrupted run: 2 of 4 steps already done")
	for k, n := range recordCounts(t, f) {
		assert.Equal(t, 1, n, k)
	}
}

// TestFinishedRunStaysFinished: after success a run changes nothing,
// whatever variables changed; --new-run begins a new run (plan first)
// whose run.id differs, so its backup goes elsewhere; --again is gone.
func TestFinishedRunStaysFinished(t *testing.T) {
	dir, kit, _ := finishedKitRun(t)
	first := currentRun(t, filepath.Join(dir, ".upshift", "state"))
	before := recordCounts(t, kit)

	out, code := runCode(t, "run", dir, "-var", "kit_dir="+kit, "-var", "failures=3")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Nothing to do: run "+first.ID+" of cluster ")
	assert.Contains(t, out, "finished at "+first.UpdatedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	assert.Contains(t, out, "--new-run")
	assert.Equal(t, before, recordCounts(t, kit), "nothing ran")

	out, code = runCode(t, "run", dir, "-var", "kit_dir="+kit, "--again")
	assert.Equal(t, exitUsage, code, out)
	assert.Contains(t, out, "--new-run")

	out = runOK(t, "run", dir, "-var", "kit_dir="+kit, "--new-run")
	assert.Contains(t, out, "Beginning a new run of cluster")
	assert.Contains(t, out, `key = "backup-"… (known after the run starts)`, "the plan shows run.id unknown")
	second := currentRun(t, filepath.Join(dir, ".upshift", "state"))
	assert.NotEqual(t, first.ID, second.ID)
	counts := recordCounts(t, kit)
	assert.Equal(t, 1, counts["backup-"+first.ID])
	assert.Equal(t, 1, counts["backup-"+second.ID], "each run backs up under its own id")
	status := runOK(t, "status", dir)
	assert.Contains(t, status, "Past runs:\n  run "+first.ID+": done")
}

// TestResumeHintRepeatsFlags: the hint after a failed run is the command
// to type, every flag included, a sensitive value elided.
func TestResumeHintRepeatsFlags(t *testing.T) {
	needBinaries(t)
	dir := clusterPlaybook(t)
	kit := filepath.Join(t.TempDir(), "kit")
	varFile := filepath.Join(t.TempDir(), "my vars.hcl")
	require.NoError(t, os.WriteFile(varFile, []byte(fmt.Sprintf("kit_dir = %q\nfailures = 1\n", kit)), 0o644))
	initPlaybook(t, dir, "-var-file", varFile)
	state := filepath.Join(t.TempDir(), "state")
	out, code := runCode(t, "run", dir, "-var-file", varFile, "-var", "token=hunter2", "--state-dir", state, "--parallelism", "3")
	require.Equal(t, exitFailed, code, out)
	want := fmt.Sprintf("upshift run %s -var-file '%s' -var 'token=(sensitive: give it again)' --state-dir %s --parallelism 3   (sensitive values elided)", dir, varFile, state)
	assert.Contains(t, out, want)
	assert.Contains(t, out, "upshift status "+dir+" --state-dir "+state)
	assert.NotContains(t, out, "hunter2")
	runOK(t, "run", dir, "-var-file", varFile, "-var", "token=hunter2", "--state-dir", state, "--parallelism", "3")
}

// TestLegacyStateIsMigratedOrRefused: the journal of an older upshift (one
// per folder) is filed under the cluster when the playbook and variables
// are those it ran with, refused with both ways out named otherwise.
func TestLegacyStateIsMigratedOrRefused(t *testing.T) {
	dir, kit, state := finishedKitRun(t)
	makeLegacy := func() {
		cd := clusterDir(t, state)
		// The folder's key goes along: the journal keeps its digest keyed.
		for _, name := range []string{"run.json", "run.log", "history", "key"} {
			if _, err := os.Stat(filepath.Join(cd, name)); err == nil {
				require.NoError(t, os.Rename(filepath.Join(cd, name), filepath.Join(state, name)))
			}
		}
		require.NoError(t, os.RemoveAll(filepath.Join(state, "clusters")))
	}
	makeLegacy()
	out, code := runCode(t, "run", dir, "-var", "kit_dir="+kit)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Moved the journal of an older upshift")
	assert.Contains(t, out, "Nothing to do", "a finished run stays finished across the migration")

	// Other variables: upshift cannot tell it was this cluster.
	makeLegacy()
	out, code = runCode(t, "run", dir, "-var", "kit_dir="+kit, "-var", "token=x")
	assert.Equal(t, exitRefused, code, out)
	assert.Contains(t, out, "--legacy-state adopt")
	assert.Contains(t, out, "--legacy-state set-aside")
	out, code = runCode(t, "run", dir, "-var", "kit_dir="+kit, "-var", "token=x", "--legacy-state", "adopt")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Nothing to do")
	status := runOK(t, "status", dir)
	assert.NotContains(t, status, "older upshift")
}

// TestSignalsStopCleanly sends SIGTERM, SIGHUP (to the whole process
// group, as a closed terminal does) and SIGPIPE (the reader of upshift's
// output goes away) to a real run: the running step finishes and is
// recorded, no new step starts, the exit code is the stopped one, the
// lock is free, no plugin process is left, and `upshift run` resumes to
// the end.
func TestSignalsStopCleanly(t *testing.T) {
	needBinaries(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE} {
		t.Run(signalName(sig), func(t *testing.T) {
			dir, state := kitPlaybook(t, 1, `
rollout "slow" {
  over         = ["a", "b", "c"]
  max_parallel = 1
  depends_on   = [rollout.items]
  step "work" {
    run = node_pool.kit.sleep
    with {
      duration = "800ms"
      key      = each.key
    }
  }
  step "after" {
    run = node_pool.kit.record
    with {
      key = "after-${each.key}"
    }
  }
}
`)
			initPlaybook(t, dir)
			cmd := upshift(t, "run", dir, "--json")
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var errBuf strings.Builder
			cmd.Stderr = &errBuf
			require.NoError(t, cmd.Start())
			defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()

			// Read events until the first slow step runs.
			lines := make(chan string, 100)
			var readMu sync.Mutex
			stopReading := false
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					readMu.Lock()
					stop := stopReading
					readMu.Unlock()
					if stop {
						return
					}
					lines <- sc.Text()
				}
				close(lines)
			}()
			deadline := time.After(30 * time.Second)
			for started := false; !started; {
				select {
				case l := <-lines:
					started = strings.Contains(l, `"step_started"`) && strings.Contains(l, `step.work[\"a\"]`)
				case <-deadline:
					t.Fatalf("the slow step never started: %s", errBuf.String())
				}
			}
			plugins := procfs.Pids(procfs.Children(cmd.Process.Pid))
			require.NotEmpty(t, plugins, "the plugin runs as a child of upshift")

			switch sig {
			case syscall.SIGHUP:
				require.NoError(t, syscall.Kill(-cmd.Process.Pid, sig)) // the whole group, as a terminal does
			case syscall.SIGPIPE:
				// The reader goes away; upshift's next write raises SIGPIPE.
				readMu.Lock()
				stopReading = true
				readMu.Unlock()
				require.NoError(t, stdout.(io.Closer).Close())
			default:
				require.NoError(t, cmd.Process.Signal(sig))
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("upshift did not stop: %s", errBuf.String())
			}
			require.Error(t, err)
			assert.Equal(t, exitStopped, second2code(err), "stderr: %s", errBuf.String())
			assert.Contains(t, errBuf.String(), "Stopping ("+signalName(sig)+")")

			run := currentRun(t, filepath.Join(dir, ".upshift", "state"))
			assert.Equal(t, journal.Stopped, run.Status)
			assert.Equal(t, journal.Done, run.Steps[`step.work["a"]`].Status, "the running step finished and was recorded")
			for addr, s := range run.Steps {
				assert.NotEqual(t, journal.Running, s.Status, addr)
			}
			assert.Equal(t, journal.Pending, run.Steps[`step.work["c"]`].Status, "no new item started")

			lock, err := journal.Acquire(clusterDir(t, filepath.Join(dir, ".upshift", "state")), journal.Owner{})
			require.NoError(t, err, "the lock is free")
			_, stale := lock.TakenOver()
			assert.False(t, stale, "released, not left behind")
			require.NoError(t, lock.Release())
			require.Eventually(t, func() bool { return !procfs.AnyAlive(plugins) }, 5*time.Second, 20*time.Millisecond, "no plugin process is left: %v", plugins)

			out := runOK(t, "run", dir)
			assert.Contains(t, out, "resuming an interrupted run")
			assert.Contains(t, out, "run done")
			assert.Equal(t, 1, recordCounts(t, state)["after-c"])
		})
	}
}
