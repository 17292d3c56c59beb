package main

// Drills of issue 10, item 7: a crashed plugin, or a crashed upshift, loses
// no step. The lab's migrations are made slow (3 s) so the crash lands in
// the middle of one.

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// crashPlaybook copies the shipped playbook, gives its migrate step the
// check and its healthy step the version and writability the shipped
// playbook should carry (unless it carries them already), and slows every
// node's migration down by 3 s in the lab's variables.
func crashPlaybook(t *testing.T, d *drillLab) string {
	t.Helper()
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	file := filepath.Join(playbook, "upgrade.hcl")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	src := string(b)
	if !strings.Contains(src, `"--check"`) {
		src = strings.Replace(src, "      command = each.value.migrate_command\n",
			"      command = each.value.migrate_command\n      check   = concat(each.value.migrate_command, [\"--check\"])\n", 1)
		require.Contains(t, src, `"--check"`, "the migrate step's check")
	}
	if !strings.Contains(src, "writable") {
		src = strings.Replace(src, "      timeout = var.healthy_timeout\n",
			"      timeout  = var.healthy_timeout\n      version  = var.target_version\n      writable = true\n", 1)
		require.Contains(t, src, "writable = true", "the healthy step's version and writability")
	}
	require.NoError(t, os.WriteFile(file, []byte(src), 0o644))
	vars, err := os.ReadFile(d.s.VarsFile())
	require.NoError(t, err)
	re := regexp.MustCompile(`migrate_command\s*=\s*\["`)
	require.Len(t, re.FindAllString(string(vars), -1), len(d.s.Nodes))
	slow := re.ReplaceAllString(string(vars), `migrate_command = ["sh", "-c", "sleep 3; exec \"$$0\" \"$$@\"", "`)
	require.NoError(t, os.WriteFile(d.s.VarsFile(), []byte(slow), 0o644))
	return playbook
}

// descendants lists the live processes under pid, depth first.
func descendants(pid int) []procfs.Proc {
	var out []procfs.Proc
	for _, c := range procfs.Children(pid) {
		out = append(out, c)
		out = append(out, descendants(c.Pid)...)
	}
	return out
}

// inMigrate waits until run's process tree has a migration running and
// returns the process plugin running it and the migration's processes.
func inMigrate(t *testing.T, upshiftPid int) (plugin int, step []int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, c := range procfs.Children(upshiftPid) {
			if len(c.Args) == 0 || filepath.Base(c.Args[0]) != "upshift-plugin-process" {
				continue
			}
			for _, g := range descendants(c.Pid) {
				if strings.Contains(g.Title(), "platformd migrate --config") {
					for _, p := range descendants(c.Pid) {
						step = append(step, p.Pid)
					}
					return c.Pid, step
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no migration started within 3 minutes")
	return 0, nil
}

func waitGone(t *testing.T, what string, pids []int) {
	t.Helper()
	for _, pid := range procfs.WaitGone(pids, 5*time.Second) {
		t.Errorf("%s: %s is still running", what, procfs.Describe(pid))
	}
}

// crashLab is a drill's lab with the crash playbook initialised, and the
// node upgraded first (the processing one).
func crashLab(t *testing.T) (d *drillLab, playbook string, first lab.NodeState) {
	t.Helper()
	needHAProxy(t)
	longDrill(t)
	d = startDrillLab(t, "lab")
	playbook = crashPlaybook(t, d)
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())
	first = d.s.Nodes[0]
	for _, n := range d.s.Nodes {
		if n.Processing {
			first = n
		}
	}
	return d, playbook, first
}

// resume runs the interrupted run again, which must finish, and checks the
// lab's end state and traffic.
func resume(t *testing.T, d *drillLab, playbook, drill string) {
	t.Helper()
	res := runOK(t, "run", playbook, "-var-file", d.s.VarsFile())
	assert.Contains(t, res, "resuming")
	assert.NotContains(t, res, "cannot tell whether it took effect")
	t.Logf("resumed run, the migrations:\n%s", grepLines(res, "s] step.migrate["))
	d.upgraded(t)
	assert.Empty(t, pluginProcesses(), "no plugin process left")
	d.finish(t, drill)
}

// pluginProcesses lists the plugin processes of this test's binaries.
func pluginProcesses() []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := procfs.Read(pid); ok && p.Live() && len(p.Args) > 0 && strings.HasPrefix(p.Args[0], filepath.Join(binDir, "upshift-plugin-")) {
			out = append(out, pid)
		}
	}
	return out
}

// TestDrillPluginKilledDuringMigrate: the process plugin is SIGKILLed while
// the first node's migration runs. Its migration dies with it (the
// process group), so the data is not migrated behind the run's back; the
// run fails naming the plugin's death; `upshift run` resumes and finishes,
// under traffic, with 0 failed reads and 0 lost writes.
func TestDrillPluginKilledDuringMigrate(t *testing.T) {
	d, playbook, first := crashLab(t)
	cmd := upshift(t, "run", playbook, "-var-file", d.s.VarsFile())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	var log strings.Builder
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
	}()
	plugin, step := inMigrate(t, cmd.Process.Pid)
	require.NoError(t, syscall.Kill(plugin, syscall.SIGKILL))
	waitGone(t, "the migration of a killed plugin", step)
	<-copied
	err = cmd.Wait()
	require.Error(t, err, "the run fails with its plugin:\n%s", log.String())
	assert.Contains(t, log.String(), "exited during", "the plugin's death is named:\n%s", log.String())
	t.Logf("first run:\n%s", lastLines(log.String(), 12))

	// The failure came before the point of no return, so the run tried to
	// return the cluster to where it began; with its node plugin dead it
	// could only in part (B dropped, the nodes' undos failed), and says so.
	assert.Contains(t, log.String(), "returned to where it began only in part", "the partial return is named:\n%s", log.String())
	// Nothing was migrated behind the run's back: the node's data folder
	// is not at version 2 (its database B was dropped by the return), so
	// the step can run again.
	version, err := os.ReadFile(filepath.Join(first.DataDir, "VERSION"))
	require.NoError(t, err)
	assert.Equal(t, "1", strings.TrimSpace(string(version)), "the node's data folder after the kill: not migrated")
	resume(t, d, playbook, "plugin killed during migrate")
}

// TestDrillUpshiftKilledDuringMigrate: upshift itself is SIGKILLed (only
// upshift: not its process group) while the first node's migration runs.
// Its plugins die with it (parent-death signal) and the migration with
// them; the step is found in flight on resume and settled by its check
// (not migrated: run it), and the run finishes.
func TestDrillUpshiftKilledDuringMigrate(t *testing.T) {
	d, playbook, _ := crashLab(t)
	cmd := upshift(t, "run", playbook, "-var-file", d.s.VarsFile())
	require.NoError(t, cmd.Start())
	var plugins []int
	for _, c := range procfs.Children(cmd.Process.Pid) {
		plugins = append(plugins, c.Pid)
	}
	_, step := inMigrate(t, cmd.Process.Pid)
	for _, c := range procfs.Children(cmd.Process.Pid) {
		plugins = append(plugins, c.Pid)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	waitGone(t, "a plugin of a killed upshift", plugins)
	waitGone(t, "the migration of a killed upshift", step)
	assert.Empty(t, pluginProcesses(), "no plugin process left")
	// The migration found in flight is settled by its check (not migrated:
	// it runs again, check and migration taking 3 s each).
	resume(t, d, playbook, "upshift killed during migrate")
}

// TestDrillStrayOnNodePort: while node-1 is down for its upgrade, another
// process takes its port and answers its health URL as a healthy version-2
// node. start must not take it for the node: the run fails naming the
// stray, the cluster keeps serving on the other nodes; with the stray gone
// the run resumes and finishes.
func TestDrillStrayOnNodePort(t *testing.T) {
	d, playbook, first := crashLab(t)
	cmd := upshift(t, "run", playbook, "-var-file", d.s.VarsFile())
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	inMigrate(t, cmd.Process.Pid) // the node is stopped: its port is free
	ln, err := net.Listen("tcp", first.Address)
	require.NoError(t, err, "taking %s's port", first.Name)
	stray := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok","name":"` + first.Name + `","version":"2","read_only":false}`))
	})}
	go func() { _ = stray.Serve(ln) }()
	err = cmd.Wait()
	require.Error(t, err, "the run must not finish on the stray's answers:\n%s", log.String())
	msg := grepLines(log.String(), "s] step.start[\""+first.Name+"\"]")
	t.Logf("the run with a stray on %s:\n%s", first.Address, msg)
	assert.Contains(t, msg, "is held by pid "+strconv.Itoa(os.Getpid()), "start names the stray")
	_ = stray.Close()
	resume(t, d, playbook, "stray on a node's port")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
