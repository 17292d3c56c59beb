package main

// Drills of the point of no return, the preflight and rollback with the
// shipped playbook (issue 10), on the real lab under live traffic.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
)

// breakMigration makes node's migration fail (its config file does not
// exist) in the lab's variables, and returns the variables as they were.
func breakMigration(t *testing.T, d *drillLab, node lab.NodeState) []byte {
	t.Helper()
	good, err := os.ReadFile(d.s.VarsFile())
	require.NoError(t, err)
	broken := strings.Replace(string(good), `"migrate", "--config", "`+node.ConfigFile+`"`, `"migrate", "--config", "/nonexistent/config.json"`, 1)
	require.NotEqual(t, string(good), broken)
	require.NoError(t, os.WriteFile(d.s.VarsFile(), []byte(broken), 0o644))
	return good
}

// inRotation asserts that every server of the lab's HAProxy is UP and in
// rotation.
func (d *drillLab) inRotation(t *testing.T) {
	t.Helper()
	for _, c := range lab.FinalChecks(context.Background(), d.s, "2") {
		if strings.HasPrefix(c.What, "haproxy:") {
			assert.True(t, c.OK, "%s: %s", c.What, c.Got)
		}
	}
}

// TestDrillWrongSocketRefusedByPreflight: the load balancer's runtime
// socket is wrong in the variables. check and run both find it before
// anything changes: exit 3, the problem named, no run begun, no backup, no
// node read-only. Fixed, run upgrades the cluster.
func TestDrillWrongSocketRefusedByPreflight(t *testing.T) {
	needHAProxy(t)
	d := startDrillLab(t, "lab")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	good, err := os.ReadFile(d.s.VarsFile())
	require.NoError(t, err)
	socket := d.s.HAProxyCtl().Socket
	wrong := strings.Replace(string(good), socket, socket+".wrong", 1)
	require.NotEqual(t, string(good), wrong)
	require.NoError(t, os.WriteFile(d.s.VarsFile(), []byte(wrong), 0o644))
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())

	out, code := runCode(t, "check", playbook, "-var-file", d.s.VarsFile())
	assert.Equal(t, exitPreflight, code, out)
	assert.Regexp(t, `FAIL  preflight.load_balancer \(load_balancer.front.preflight\)\s+preflight failed: the load balancer does not answer: HAProxy admin socket \S+admin.sock.wrong: no such file or directory`, out)
	assert.Contains(t, out, "ok    preflight.nodes")
	assert.Contains(t, out, "ok    preflight.database")
	assert.Contains(t, out, "1 of 3 checks found problems")

	out, code = runCode(t, "run", playbook, "-var-file", d.s.VarsFile())
	assert.Equal(t, exitPreflight, code, out)
	assert.Contains(t, out, "preflight found problems in 1 of 3 checks; nothing was changed")
	assert.Contains(t, out, "no run was begun")
	assert.NotContains(t, out, "read_only")
	d.untouched(t)
	assert.Empty(t, d.backupRuns(t), "no backup was taken")
	_, err = os.Stat(filepath.Join(playbook, ".upshift", "state", "clusters"))
	if err == nil {
		for _, e := range mustReadDir(t, filepath.Join(playbook, ".upshift", "state", "clusters")) {
			_, err := os.Stat(filepath.Join(playbook, ".upshift", "state", "clusters", e, "run.json"))
			assert.True(t, os.IsNotExist(err), "no run was begun in the journal")
		}
	}

	require.NoError(t, os.WriteFile(d.s.VarsFile(), good, 0o644))
	runOK(t, "run", playbook, "-var-file", d.s.VarsFile())
	d.upgraded(t)
	d.finish(t, "wrong socket refused by preflight")
}

func mustReadDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestDrillMigrateFailsOnProcessingNode: the processing node's migration
// fails, before the point of no return. The run returns the cluster to
// where it began: every node on version 1, writable, in rotation, B
// dropped; the message says so. Fixed, `upshift run` begins again (read
// only, backup, copy anew: A took writes meanwhile) and finishes with
// nothing lost.
func TestDrillMigrateFailsOnProcessingNode(t *testing.T) {
	needHAProxy(t)
	d := startDrillLab(t, "lab")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	processing := d.s.Nodes[0]
	require.True(t, processing.Processing)
	good := breakMigration(t, d, processing)
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())

	out, code := runCode(t, "run", playbook, "-var-file", d.s.VarsFile())
	require.Equal(t, exitFailed, code, out)
	assert.Contains(t, out, `step.migrate["node-1"]: FAILED`)
	assert.Contains(t, out, "The run ended before its point of no return: the cluster was returned to where it began")
	assert.Contains(t, out, "Every node runs the old version again, takes writes and is in rotation")
	d.untouched(t)
	d.inRotation(t)
	_, err := os.Stat(d.s.DB.B)
	if d.s.DB.Engine == "sqlite" {
		assert.True(t, os.IsNotExist(err), "B was dropped: %v", err)
	}
	status := runOK(t, "status", playbook)
	assert.Contains(t, status, "rolled_back")
	assert.Contains(t, status, "It ended before its point of no return: the cluster was returned to where it began")

	require.NoError(t, os.WriteFile(d.s.VarsFile(), good, 0o644))
	out = runOK(t, "run", playbook, "-var-file", d.s.VarsFile())
	assert.Contains(t, out, "resuming an interrupted run")
	d.upgraded(t)
	d.finish(t, "migrate fails on the processing node")
}

// TestDrillRollbackOnLastNode: with on_failure = "rollback", the last
// node's migration fails, past the point of no return. That node is put
// back: version 1, config on A, read-only as the run had it, serving
// reads and in rotation; the others stay upgraded and serving; the
// message says where each node stands.
func TestDrillRollbackOnLastNode(t *testing.T) {
	needHAProxy(t)
	longDrill(t)
	d := startDrillLab(t, "lab")
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	hcl := filepath.Join(playbook, "upgrade.hcl")
	src, err := os.ReadFile(hcl)
	require.NoError(t, err)
	withRollback := strings.Replace(string(src), `on_failure   = "halt"`, `on_failure   = "rollback"`, 1)
	require.NotEqual(t, string(src), withRollback)
	require.NoError(t, os.WriteFile(hcl, []byte(withRollback), 0o644))
	last := d.s.Nodes[len(d.s.Nodes)-1]
	breakMigration(t, d, last)
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())

	out, code := runCode(t, "run", playbook, "-var-file", d.s.VarsFile())
	require.Equal(t, exitFailed, code, out)
	assert.Contains(t, out, `step.migrate["`+last.Name+`"]: FAILED`)
	assert.Contains(t, out, "past its point of no return")
	assert.Contains(t, out, last.Name+`: stopped in rollout "upgrade"`)
	assert.Contains(t, out, `node-1, node-2: done (every step of rollout "upgrade")`)

	status := runOK(t, "status", playbook)
	assert.Contains(t, status, "It is past its point of no return (step.start[\"node-1\"] ran). Where each item stands:")
	assert.Contains(t, status, `node-1, node-2: done (every step of rollout "upgrade")`)

	h := health(t, last.Address)
	assert.Equal(t, "1", h.Version, "%s is back on version 1", last.Name)
	assert.True(t, h.ReadOnly, "%s is read-only again, as the run had it: its database A takes no writes", last.Name)
	for _, n := range d.s.Nodes[:len(d.s.Nodes)-1] {
		h := health(t, n.Address)
		assert.Equal(t, "2", h.Version, n.Name)
		assert.False(t, h.ReadOnly, n.Name)
	}
	d.inRotation(t)
	d.finish(t, "rollback on the last node")
}
