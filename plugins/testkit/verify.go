package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// verify finds a node that is not in the pool, is still read-only when
// writable is asked, or whose "verify" attribute holds a problem (a test's
// way to make verify fail). The test nodes keep no files or config, so
// files and same_config are not checked.
func (k *kit) verify(_ context.Context, r *sdk.Request) (cty.Value, error) {
	var a struct {
		Nodes []string `cty:"nodes"`
	}
	if err := r.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	writable := r.Bool("writable", true)
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
		if p, ok := n.attrs["verify"]; ok && !p.IsNull() && p.Type() == cty.String {
			problems = append(problems, fmt.Sprintf("node %s: %s", name, p.AsString()))
		}
		if writable && n.readOnly {
			problems = append(problems, fmt.Sprintf("node %s: is still in read-only mode", name))
		}
		versions[name] = cty.StringVal(r.String("version"))
	}
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	vm := cty.MapValEmpty(cty.String)
	if len(versions) > 0 {
		vm = cty.MapVal(versions)
	}
	return result(schema.ContractAction(schema.KindNodePool, "verify"), map[string]cty.Value{"versions": vm})
}
