package main

// A drill of a gate between batches (issue 12) on the real lab under live
// traffic: the run pauses after the first batch, the operator approves, the
// run finishes.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/lab"
)

// gatePlaybook copies the shipped playbook with rollout attributes added
// (such as pause_after_batch = [1]).
func gatePlaybook(t *testing.T, attrs string) string {
	t.Helper()
	playbook := filepath.Join(t.TempDir(), "playbook")
	require.NoError(t, lab.CopyPlaybook(shippedPlaybook, playbook))
	path := filepath.Join(playbook, "upgrade.hcl")
	src, err := os.ReadFile(path)
	require.NoError(t, err)
	gated := strings.Replace(string(src), "  on_failure   = \"halt\"\n", "  on_failure   = \"halt\"\n"+attrs+"\n", 1)
	require.NotEqual(t, string(src), gated)
	require.NoError(t, os.WriteFile(path, []byte(gated), 0o644))
	return playbook
}

// TestDrillGateAfterFirstBatch: with pause_after_batch = [1], the run
// upgrades the processing node and pauses (exit 5) saying how to continue;
// node-1 serves version 2 while node-2 and node-3 stay on version 1, under
// traffic; `upshift approve` continues and the run finishes, every node
// upgraded, with no failed request and no lost write.
func TestDrillGateAfterFirstBatch(t *testing.T) {
	needHAProxy(t)
	d := startDrillLab(t, "lab")
	playbook := gatePlaybook(t, "  pause_after_batch = [1]")
	runOK(t, "init", playbook, "-var-file", d.s.VarsFile())

	plan := runOK(t, "plan", playbook, "-var-file", d.s.VarsFile())
	assert.Contains(t, plan, `||  gate.upgrade["after batch 1"]  after batch 1: waits for an operator`)

	out, code := runCode(t, "approve", playbook, "-var-file", d.s.VarsFile())
	assert.Equal(t, exitUsage, code, out)
	assert.Contains(t, out, "nothing to approve")
	d.untouched(t)

	out, code = runCode(t, "run", playbook, "-var-file", d.s.VarsFile())
	require.Equal(t, exitStopped, code, out)
	assert.Contains(t, out, `is paused at gate.upgrade["after batch 1"], after batch 1 of rollout "upgrade", waiting for approval. Nothing was undone`)
	assert.Contains(t, out, "To continue, run\n  upshift run "+playbook+" -var-file "+d.s.VarsFile()+"\n")
	assert.Contains(t, out, "  upshift approve "+playbook+" -var-file "+d.s.VarsFile()+"\n")
	require.True(t, d.s.Nodes[0].Processing)
	assert.Equal(t, "2", health(t, d.s.Nodes[0].Address).Version, "node-1 is on X+1 at the gate")
	for _, n := range d.s.Nodes[1:] {
		assert.Equal(t, "1", health(t, n.Address).Version, "%s waits on X at the gate", n.Name)
	}
	status := runOK(t, "status", playbook)
	assert.Contains(t, status, "paused")

	time.Sleep(2 * time.Second) // traffic meets the cluster as the gate holds it
	out = runOK(t, "approve", playbook, "-var-file", d.s.VarsFile())
	assert.Contains(t, out, "resuming an interrupted run")
	d.upgraded(t)
	d.inRotation(t)
	d.finish(t, "gate after the first batch")
}
