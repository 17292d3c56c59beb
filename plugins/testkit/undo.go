package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// The undo actions and preflight: what runner tests of rollback and of
// the point of no return drive.

func (k *kit) restoreConfig(_ context.Context, r *sdk.Request) (cty.Value, error) {
	var a struct {
		Key      string  `cty:"key"`
		Existed  *bool   `cty:"existed"`
		Previous *string `cty:"previous"`
	}
	if err := r.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	if a.Existed == nil {
		return cty.NilVal, sdk.ArgError("existed", "the value before set_config is not known")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	_, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	cur, had := n.config[a.Key]
	changed := false
	switch {
	case !*a.Existed:
		delete(n.config, a.Key)
		changed = had
	case a.Previous == nil:
		return cty.NilVal, sdk.ArgError("previous", "the value before set_config is not known")
	default:
		n.config[a.Key] = *a.Previous
		changed = !had || cur != *a.Previous
	}
	return result(schema.ContractAction(schema.KindNodePool, "restore_config"), map[string]cty.Value{"changed": cty.BoolVal(changed)})
}

func (k *kit) remove(_ context.Context, r *sdk.Request) (cty.Value, error) {
	dir, err := k.dir("remove")
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
	if rel == "" || !filepath.IsLocal(rel) {
		return cty.NilVal, sdk.ArgError("path", "%q must be a relative path inside the node's data folder", rel)
	}
	removed := false
	if r.Bool("created", true) {
		err := os.Remove(filepath.Join(dir, "nodes", name, rel))
		switch {
		case err == nil:
			removed = true
		case !errors.Is(err, os.ErrNotExist):
			return cty.NilVal, err
		}
	}
	return result(schema.ContractAction(schema.KindNodePool, "remove"), map[string]cty.Value{"removed": cty.BoolVal(removed)})
}

func (k *kit) readWrite(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	n.readOnly = false
	return result(schema.ContractAction(schema.KindNodePool, "read_write"), map[string]cty.Value{"node": cty.StringVal(name), "enabled": cty.False})
}

// preflight finds a node that is not in the pool, or whose "preflight"
// attribute holds a problem (a test's way to make preflight fail).
func (k *kit) preflight(_ context.Context, r *sdk.Request) (cty.Value, error) {
	var a struct {
		Nodes []string `cty:"nodes"`
	}
	if err := r.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var problems []string
	versions := map[string]cty.Value{}
	for _, name := range a.Nodes {
		n, ok := k.nodes[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("node %s: not in this pool", name))
			continue
		}
		if p, ok := n.attrs["preflight"]; ok && !p.IsNull() && p.Type() == cty.String {
			problems = append(problems, fmt.Sprintf("node %s: %s", name, p.AsString()))
		}
		v := "1"
		if av, ok := n.attrs["version"]; ok && !av.IsNull() && av.Type() == cty.String {
			v = av.AsString()
		}
		versions[name] = cty.StringVal(v)
	}
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	vm := cty.MapValEmpty(cty.String)
	if len(versions) > 0 {
		vm = cty.MapVal(versions)
	}
	return result(schema.ContractAction(schema.KindNodePool, "preflight"), map[string]cty.Value{"versions": vm})
}
