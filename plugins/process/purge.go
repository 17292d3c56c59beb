package main

import (
	"context"

	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
)

var _ nodekit.Purger[*localnode.Node] = driver{}

// Purge empties a folder of the node's data folder on this host, through
// an os.Root (nodekit.PurgeLocal).
func (driver) Purge(_ context.Context, n *localnode.Node, p string) (int, bool, error) {
	return nodekit.PurgeLocal(n.DataDir, p)
}
