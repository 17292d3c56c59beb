package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/runner/journal"
)

// binDir holds upshift and the testkit plugin, built once for the
// end-to-end tests of this file.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "upshift-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for pkg, out := range map[string]string{
			".": "upshift", "../platformd": "platformd",
			"../../plugins/testkit": "upshift-plugin-testkit", "../../plugins/process": "upshift-plugin-process",
			"../../plugins/sqlite": "upshift-plugin-sqlite", "../../plugins/haproxy": "upshift-plugin-haproxy",
			"../../plugins/postgres": "upshift-plugin-postgres", "../../plugins/mysql": "upshift-plugin-mysql",
			"../../plugins/nginx": "upshift-plugin-nginx", "../../plugins/ssh": "upshift-plugin-ssh",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
				return 1
			}
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

func needBinaries(t *testing.T) {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// kitPlaybook writes a playbook over n items using the testkit plugin: two
// non-idempotent record steps around a short sleep in each item.
func kitPlaybook(t *testing.T, n int, extra string) (dir, state string) {
	t.Helper()
	dir = t.TempDir()
	state = filepath.Join(dir, "kitstate")
	require.NoError(t, os.MkdirAll(state, 0o755))
	var nodes []string
	for i := 1; i <= n; i++ {
		nodes = append(nodes, fmt.Sprintf(`{ name = "n%d" }`, i))
	}
	src := fmt.Sprintf(`
node_pool "kit" {
  plugin = "testkit"
  config {
    state_dir = %q
  }
  nodes = [%s]
}

rollout "items" {
  over         = node_pool.kit.nodes
  max_parallel = 2
  step "first" {
    run = node_pool.kit.record
    with {
      key = "first-${each.key}"
    }
  }
  step "pause" {
    run = node_pool.kit.sleep
    with {
      duration = "50ms"
    }
  }
  step "second" {
    run = node_pool.kit.record
    with {
      key = "second-${each.key}"
    }
  }
}
%s`, state, strings.Join(nodes, ", "), extra)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
	return dir, state
}

func upshift(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if len(args) > 0 && (args[0] == "run" || args[0] == "resume") {
		// No terminal here: tests approve as CI does.
		args = append(append([]string{}, args...), "--auto-approve")
	}
	cmd := exec.Command(filepath.Join(binDir, "upshift"), args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	// Its own process group, so that a kill takes its plugins with it, as a
	// crash of the machine would.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := upshift(t, args...).CombinedOutput()
	require.NoError(t, err, "upshift %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func initPlaybook(t *testing.T, dir string, vars ...string) {
	t.Helper()
	out := runOK(t, append([]string{"init", dir}, vars...)...)
	require.Contains(t, out, "testkit")
}

// recordCounts reads testkit's record log: how often each key was recorded.
func recordCounts(t *testing.T, state string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	f, err := os.Open(filepath.Join(state, "record.log"))
	if os.IsNotExist(err) {
		return counts
	}
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			counts[fields[0]]++
		}
	}
	return counts
}

// TestCrashAndResume kills the runner with SIGKILL at random moments of a
// rollout, again and again, and reruns it until it finishes: every
// non-idempotent step must have run exactly once, and the journal must end
// complete.
func TestCrashAndResume(t *testing.T) {
	needBinaries(t)
	const trials = 20
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, rechecked := 0, 0
	for trial := 0; trial < trials; trial++ {
		dir, state := kitPlaybook(t, 4, "")
		initPlaybook(t, dir)
		// A few runs killed at random moments, then one left to finish:
		// on a busy machine a run may outlast every kill window.
		finished := false
		killsThisTrial := 1 + rng.Intn(4)
		for attempt := 0; attempt <= killsThisTrial && !finished; attempt++ {
			cmd := upshift(t, "run", dir, "--json")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			window := time.Duration(10+rng.Intn(200)) * time.Millisecond
			if attempt == killsThisTrial {
				window = 2 * time.Minute // the last run is not killed
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
			rechecked += strings.Count(out.String(), "checked: already applied")
		}
		require.True(t, finished, "trial %d never finished", trial)

		counts := recordCounts(t, state)
		for i := 1; i <= 4; i++ {
			for _, step := range []string{"first", "second"} {
				key := fmt.Sprintf("%s-n%d", step, i)
				assert.Equal(t, 1, counts[key], "trial %d: %s ran %d times", trial, key, counts[key])
			}
		}
		run := currentRun(t, filepath.Join(dir, ".upshift", "state"))
		assert.Equal(t, journal.Done, run.Status)
		require.Len(t, run.Steps, 12)
		for addr, s := range run.Steps {
			assert.Equal(t, journal.Done, s.Status, "trial %d: %s", trial, addr)
		}
	}
	t.Logf("%d trials, %d kills, %d in-flight steps re-checked instead of rerun", trials, kills, rechecked)
	assert.GreaterOrEqual(t, kills, trials, "the test must actually interrupt runs")
}

func TestSecondRunIsRefusedByTheLock(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 1, `
step "long" {
  run = node_pool.kit.sleep
  with {
    duration = "3s"
  }
}
`)
	initPlaybook(t, dir)
	first := upshift(t, "run", dir)
	var out syncBuffer
	first.Stdout = &out
	require.NoError(t, first.Start())
	defer func() { _ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL); _ = first.Wait() }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "step.long") }, 10*time.Second, 20*time.Millisecond)

	second, err := upshift(t, "run", dir).CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitLocked, second2code(err))
	assert.Contains(t, string(second), "another upshift run holds the lock")
	assert.Contains(t, string(second), fmt.Sprintf("pid %d", first.Process.Pid))
}

// clusterDir is the folder of the one cluster a state folder holds.
func clusterDir(t *testing.T, state string) string {
	t.Helper()
	store, err := journal.OpenStore(state)
	require.NoError(t, err)
	clusters, err := store.Clusters()
	require.NoError(t, err)
	require.Len(t, clusters, 1, "one cluster in %s", state)
	return clusters[0].Dir
}

// currentRun is the current run of the one cluster a state folder holds.
func currentRun(t *testing.T, state string) *journal.Run {
	t.Helper()
	j, err := journal.Open(clusterDir(t, state))
	require.NoError(t, err)
	run, err := j.Load()
	require.NoError(t, err)
	require.NotNil(t, run)
	return run
}

func second2code(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestTamperedPluginIsRefused(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 1, "")
	// A private copy of the plugin in a trusted folder of its own (found
	// before the one beside upshift), pinned, then changed by one byte.
	pluginDir := t.TempDir()
	t.Setenv("UPSHIFT_PLUGIN_PATH", pluginDir)
	b, err := os.ReadFile(filepath.Join(binDir, "upshift-plugin-testkit"))
	require.NoError(t, err)
	bin := filepath.Join(pluginDir, "upshift-plugin-testkit")
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	initPlaybook(t, dir)
	require.NoError(t, os.WriteFile(bin, append(b, 0), 0o755))

	out, err := upshift(t, "run", dir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "does not match the checksum in upshift.lock.hcl")
	_, statErr := os.Stat(filepath.Join(dir, "kitstate", "record.log"))
	assert.True(t, os.IsNotExist(statErr), "nothing ran")
}

// TestPluginVersionConstraint: a plugin block's version is checked against
// the plugin's own version by init, and again by run when the playbook
// changed after init; a bare source names the binary.
func TestPluginVersionConstraint(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 1, `
plugin "testkit" {
  version = "~> 0.1"
}
`)
	initPlaybook(t, dir)
	main := filepath.Join(dir, "main.hcl")
	src, err := os.ReadFile(main)
	require.NoError(t, err)

	// Tightened after init: run refuses before anything runs.
	require.NoError(t, os.WriteFile(main, []byte(strings.Replace(string(src), `"~> 0.1"`, `">= 1.0"`, 1)), 0o644))
	out, err := upshift(t, "run", dir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "plugin testkit is version 0.1.0, but the playbook requires >= 1.0")
	_, statErr := os.Stat(filepath.Join(dir, "kitstate", "record.log"))
	assert.True(t, os.IsNotExist(statErr), "nothing ran")
	out, err = upshift(t, "init", dir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "plugin testkit is version 0.1.0, but the playbook requires >= 1.0")

	// Not a constraint: a diagnostic pointing at it.
	require.NoError(t, os.WriteFile(main, []byte(strings.Replace(string(src), `"~> 0.1"`, `"soon"`, 1)), 0o644))
	out, err = upshift(t, "validate", dir).CombinedOutput()
	require.Error(t, err)
	assert.Regexp(t, `main\.hcl:\d+:\d+: error: Invalid version constraint`, string(out))

	// A bare source is the binary's name, found where plugins are looked for.
	pluginDir := t.TempDir()
	t.Setenv("UPSHIFT_PLUGIN_PATH", pluginDir)
	b, err := os.ReadFile(filepath.Join(binDir, "upshift-plugin-testkit"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(pluginDir, "kit-under-test"), b, 0o755))
	require.NoError(t, os.WriteFile(main, []byte(strings.Replace(string(src), `version = "~> 0.1"`, `source = "kit-under-test"`, 1)), 0o644))
	out, err = upshift(t, "init", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), filepath.Join(pluginDir, "kit-under-test"))
}

func TestFailedRunResumesAndStatusSaysWhere(t *testing.T) {
	needBinaries(t)
	dir, state := kitPlaybook(t, 2, `
step "flaky" {
  run        = node_pool.kit.flaky
  depends_on = [rollout.items]
  with {
    key      = "k"
    failures = 1
  }
}
`)
	initPlaybook(t, dir)
	out, err := upshift(t, "run", dir).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "step.flaky: FAILED")
	assert.Contains(t, string(out), "\n  upshift run "+dir+"\nresumes it")

	status := runOK(t, "status", dir)
	assert.Contains(t, status, "failed")
	assert.Regexp(t, `step\.flaky\s+failed`, status)

	out2 := runOK(t, "run", dir)
	assert.Contains(t, out2, "resuming an interrupted run: 6 of 7 steps already done")
	assert.Contains(t, out2, "run done")
	for k, n := range recordCounts(t, state) {
		assert.Equal(t, 1, n, k)
	}
}

func TestInterruptStopsCleanly(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 6, "")
	initPlaybook(t, dir)
	cmd := upshift(t, "run", dir, "--json")
	var out syncBuffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"step_finished"`) }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	err := cmd.Wait()
	require.Error(t, err, "an interrupted run is not a success")
	assert.Equal(t, exitStopped, second2code(err))

	run := currentRun(t, filepath.Join(dir, ".upshift", "state"))
	assert.Equal(t, journal.Stopped, run.Status)
	pending := 0
	for addr, s := range run.Steps {
		assert.NotEqual(t, journal.Running, s.Status, "%s left running after a clean stop", addr)
		if s.Status == journal.Pending {
			pending++
		}
	}
	assert.Greater(t, pending, 0, "the stop came before the end")
	var last map[string]any
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
	assert.Equal(t, "run_finished", last["type"])

	runOK(t, "run", dir) // and it resumes to the end
}

// TestValidateUsesThePinnedPlugins: without a lock file validate knows
// only the kind's contract, so testkit's own actions are unknown; once init
// has pinned the plugin, validate starts it and checks the actions and the
// config against its own schema.
func TestValidateUsesThePinnedPlugins(t *testing.T) {
	needBinaries(t)
	dir, _ := kitPlaybook(t, 1, "")
	b, err := upshift(t, "validate", dir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(b), `has no action "record"`)
	assert.Contains(t, string(b), "until `upshift init` has pinned plugin \"testkit\"")

	initPlaybook(t, dir)
	assert.Contains(t, runOK(t, "validate", dir), "is valid: 3 steps")

	main := filepath.Join(dir, "main.hcl")
	src, err := os.ReadFile(main)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(main, []byte(strings.Replace(string(src), "state_dir =", "state_dri =", 1)), 0o644))
	b, err = upshift(t, "validate", dir).CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, exitInvalid, second2code(err))
	assert.Regexp(t, `main\.hcl:\d+:\d+: error: Unsupported argument`, string(b))
	assert.Contains(t, string(b), `"state_dri"`)
}
