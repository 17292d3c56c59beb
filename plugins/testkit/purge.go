package main

import (
	"context"
	"path/filepath"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/schema"
)

// purgeGenerated serves the contract's purge_generated on a testkit node's
// folder (state_dir/nodes/NAME), as the process plugin does on a data
// folder (nodekit.PurgeLocal).
func (k *kit) purgeGenerated(_ context.Context, r *sdk.Request) (cty.Value, error) {
	dir, err := k.dir("purge_generated")
	if err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	name, _, err := k.node(r)
	k.mu.Unlock()
	if err != nil {
		return cty.NilVal, err
	}
	rel := r.String("path")
	if rel == "" {
		rel = nodekit.DefaultGenerated
	}
	if filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return cty.NilVal, sdk.ArgError("path", "%q must be a relative path inside the node's data folder", rel)
	}
	data := filepath.Join(dir, "nodes", name)
	p := filepath.Join(data, rel)
	removed, existed, err := nodekit.PurgeLocal(data, p)
	if err != nil {
		return cty.NilVal, err
	}
	return sdk.Result(schema.ContractAction(schema.KindNodePool, "purge_generated"), map[string]cty.Value{
		"node": cty.StringVal(name), "path": cty.StringVal(p), "existed": cty.BoolVal(existed), "removed": cty.NumberIntVal(int64(removed)),
	})
}
