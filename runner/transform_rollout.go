// The order inside a rollout: an item's steps one after another, and each
// batch after the one before.

package runner

import "github.com/hashicorp/hcl/v2"

// itemChainTransform makes each step of a rollout item wait for the item's
// step before it.
type itemChainTransform struct{}

func (itemChainTransform) Name() string { return "rollout item chains" }

func (itemChainTransform) Transform(b *graphBuild) hcl.Diagnostics {
	for _, r := range b.Playbook.Rollouts {
		for _, keys := range b.Items[r.Name] {
			for _, key := range keys {
				insts := b.itemInsts[r.Name][key]
				for k := 1; k < len(insts); k++ {
					b.DAG.Connect(insts[k].Addr, insts[k-1].Addr)
				}
			}
		}
	}
	return nil
}

// batchChainTransform makes the first step of each item of a batch wait
// for the last step of every item of the batch before.
type batchChainTransform struct{}

func (batchChainTransform) Name() string { return "batch chaining" }

func (batchChainTransform) Transform(b *graphBuild) hcl.Diagnostics {
	for _, r := range b.Playbook.Rollouts {
		batches := b.Items[r.Name]
		for bi := 1; bi < len(batches); bi++ {
			for _, key := range batches[bi] {
				first := b.itemInsts[r.Name][key][0].Addr
				for _, prev := range batches[bi-1] {
					b.DAG.Connect(first, b.lastOf(r.Name, prev).Addr)
				}
			}
		}
	}
	return nil
}
