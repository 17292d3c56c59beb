package nodekit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// DefaultGenerated is purge_generated's default folder, relative to the
// data folder: where platformd keeps its generated files.
const DefaultGenerated = "generated"

// PurgeGeneratedSchema is the node_pool contract's purge_generated.
var PurgeGeneratedSchema = schema.ContractAction(schema.KindNodePool, "purge_generated")

// Purger is implemented by a driver that can empty a folder of a node's.
type Purger[N Member] interface {
	// Purge removes every entry of the folder p (an absolute path the kit
	// has checked to be inside the data folder), through no symbolic
	// link; p itself stays. It returns the entries removed at p's top
	// level, and whether p existed.
	Purge(ctx context.Context, n N, p string) (removed int, existed bool, err error)
}

// purgeAction is purge_generated as Actions declares it: served by the
// driver when it is a Purger; otherwise a standard action it must still
// declare, which says it cannot.
func (k *Kit[N]) purgeAction() *sdk.Action {
	if p, ok := any(k.driver).(Purger[N]); ok {
		return k.PurgeGenerated(p)
	}
	return &sdk.Action{Schema: PurgeGeneratedSchema, Run: func(context.Context, *sdk.Request) (cty.Value, error) {
		return cty.NilVal, fmt.Errorf("the %s plugin cannot purge a node's folder", k.plugin)
	}}
}

// PurgeGenerated is the purge_generated action, served by p.
func (k *Kit[N]) PurgeGenerated(p Purger[N]) *sdk.Action {
	return &sdk.Action{
		Schema: PurgeGeneratedSchema,
		Run: func(ctx context.Context, r *sdk.Request) (cty.Value, error) {
			m, err := k.find(r)
			if err != nil {
				return cty.NilVal, err
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			n := m.node
			rel := r.String("path")
			if rel == "" {
				rel = DefaultGenerated
			}
			abs, err := n.Base().InDataDir(rel)
			if err != nil {
				return cty.NilVal, sdk.ArgError("path", "node %s: %s", n.Base().Name, err)
			}
			// A running node may be writing the files it generates: what it
			// wrote during the purge would survive it.
			rc, ok := k.driver.(RunningChecker[N])
			if !ok {
				return cty.NilVal, fmt.Errorf("the %s plugin cannot tell whether a node runs, and purge_generated needs it stopped", k.plugin)
			}
			running, err := rc.Running(ctx, n)
			if err != nil {
				return cty.NilVal, wrap(n, err)
			}
			if running {
				return cty.NilVal, wrap(n, errors.New("it is running: stop it before purging its generated files (it may be writing them)"))
			}
			removed, existed, err := p.Purge(ctx, n, abs)
			if err != nil {
				return cty.NilVal, wrap(n, err)
			}
			switch {
			case !existed:
				r.Progress("%s does not exist: nothing to purge", abs)
			default:
				r.Progress("%s: %d entries removed", abs, removed)
			}
			return sdk.Result(PurgeGeneratedSchema, map[string]cty.Value{
				"node": cty.StringVal(n.Base().Name), "path": cty.StringVal(abs),
				"existed": cty.BoolVal(existed), "removed": cty.NumberIntVal(int64(removed)),
			})
		},
	}
}

// PurgeLocal empties the folder p inside dataDir on this host, through an
// os.Root on dataDir: each component of p is looked at without following
// links (a link is refused, as a file where a folder should be), and
// Root.RemoveAll removes a link inside the folder, never what it points
// to.
func PurgeLocal(dataDir, p string) (int, bool, error) {
	rel, err := filepath.Rel(filepath.Clean(dataDir), filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return 0, false, fmt.Errorf("%s is not inside the data folder %s", p, dataDir)
	}
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return 0, false, err
	}
	defer root.Close()
	cur := ""
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := root.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return 0, false, nil
		case err != nil:
			return 0, false, err
		case fi.Mode()&fs.ModeSymlink != 0:
			return 0, false, fmt.Errorf("%s is a symbolic link; upshift does not purge through one", filepath.Join(dataDir, cur))
		case !fi.IsDir():
			return 0, false, fmt.Errorf("%s is %s, not a folder", filepath.Join(dataDir, cur), Kind(fi.Mode()))
		}
	}
	dir, err := root.Open(rel)
	if err != nil {
		return 0, true, err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return 0, true, err
	}
	removed := 0
	for _, name := range names {
		if err := root.RemoveAll(filepath.Join(rel, name)); err != nil {
			return removed, true, err
		}
		removed++
	}
	return removed, true, nil
}
