package nodekit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
)

// verifyArgs are verify's arguments, decoded.
type verifyArgs struct {
	Nodes      []string `cty:"nodes"`
	Version    string   `cty:"version"`
	Files      []string `cty:"files"`
	SameConfig []string `cty:"same_config"`
}

// verifyParallelism bounds the nodes asked at once: each answer is a few
// HTTP requests (and over SSH a session), and a large pool should not
// open hundreds at a time.
const verifyParallelism = 16

// verify serves verify: the end state of an upgrade, asked of every node
// at once, every problem reported. Configuration values are compared by
// digest of what the file holds and never shown: a database key's value
// is a DSN, often with a password.
func (k *Kit[N]) verify(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	var a verifyArgs
	if err := r.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	writable := r.Bool("writable", true)
	k.mu.RLock()
	configured := k.nodes != nil
	k.mu.RUnlock()
	if !configured {
		return cty.NilVal, fmt.Errorf("the %s plugin was not configured", k.plugin)
	}
	cr, canRead := k.driver.(ConfigReader[N])
	if len(a.SameConfig) > 0 && !canRead {
		return cty.NilVal, sdk.ArgError("same_config", "the %s plugin cannot read a node's configuration", k.plugin)
	}
	ex, canStat := k.driver.(Exister[N])
	if len(a.Files) > 0 && !canStat {
		return cty.NilVal, sdk.ArgError("files", "the %s plugin cannot tell whether a file exists on a node", k.plugin)
	}

	type answer struct {
		version  string
		problems []string
		config   map[string]string // key -> value ("\x00unset" when unset)
	}
	answers := make([]answer, len(a.Nodes))
	sem := make(chan struct{}, verifyParallelism)
	var wg sync.WaitGroup
	for i, name := range a.Nodes {
		m, ok := k.Node(name)
		if !ok {
			answers[i].problems = []string{fmt.Sprintf("node %s: not in this pool", name)}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(ans *answer, n N) {
			defer func() { <-sem; wg.Done() }()
			b := n.Base()
			ans.version, ans.problems = k.preflightNode(ctx, n, a.Version, "")
			add := func(format string, args ...any) {
				ans.problems = append(ans.problems, fmt.Sprintf("node %s: ", b.Name)+fmt.Sprintf(format, args...))
			}
			if writable && ans.version != "" {
				if ro, err := b.readOnly(ctx); err != nil {
					add("cannot tell whether it takes writes: %s", err)
				} else if ro {
					add("is still in read-only mode: it refuses every write")
				}
			}
			for _, f := range a.Files {
				p, err := b.InDataDir(f)
				if err != nil {
					add("file %s: %s", f, err)
					continue
				}
				switch there, err := ex.Exists(ctx, n, p); {
				case err != nil:
					add("cannot tell whether %s exists: %s", p, err)
				case !there:
					add("%s is missing", p)
				}
			}
			if len(a.SameConfig) > 0 {
				ans.config = map[string]string{}
				for _, key := range a.SameConfig {
					v, set, err := cr.ReadConfig(ctx, n, key)
					switch {
					case err != nil:
						add("cannot read %s from its config file: %s", key, err)
					case !set:
						ans.config[key] = "\x00unset"
					default:
						ans.config[key] = v
					}
				}
			}
		}(&answers[i], m)
	}
	wg.Wait()

	var problems []string
	versions := map[string]cty.Value{}
	for i, ans := range answers {
		problems = append(problems, ans.problems...)
		if ans.version != "" {
			versions[a.Nodes[i]] = cty.StringVal(ans.version)
		}
	}
	for _, key := range a.SameConfig {
		groups := map[string][]string{} // value -> nodes, values never shown
		var unset []string
		for i, ans := range answers {
			v, ok := ans.config[key]
			switch {
			case !ok:
			case v == "\x00unset":
				unset = append(unset, a.Nodes[i])
			default:
				groups[v] = append(groups[v], a.Nodes[i])
			}
		}
		if len(unset) > 0 {
			problems = append(problems, fmt.Sprintf("%s is not set on %s", key, strings.Join(unset, ", ")))
		}
		if len(groups) > 1 {
			var parts []string
			for _, ns := range groups {
				parts = append(parts, strings.Join(ns, ", "))
			}
			sort.Strings(parts)
			problems = append(problems, fmt.Sprintf("the nodes hold %d different values of %s (values not shown): {%s}", len(groups), key, strings.Join(parts, "} {")))
		}
	}
	return versionsResult(r, problems, versions)
}

// versionsResult is the result of a probe that reports each node's
// version (preflight, verify), or every problem it found as one error.
func versionsResult(r *sdk.Request, problems []string, versions map[string]cty.Value) (cty.Value, error) {
	if len(problems) > 0 {
		return cty.NilVal, fmt.Errorf("%d problem(s):\n  - %s", len(problems), strings.Join(problems, "\n  - "))
	}
	vm := cty.MapValEmpty(cty.String)
	if len(versions) > 0 {
		vm = cty.MapVal(versions)
	}
	return Result(r, map[string]cty.Value{"versions": vm})
}
