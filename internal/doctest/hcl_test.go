package doctest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/runner"
)

const (
	root         = "../.."
	shipped      = root + "/playbooks/rolling-upgrade"
	contextVars  = root + "/playbooks/testdata/three-nodes.vars.hcl"
	snippetFile  = "snippet.hcl"
	contextFile  = "context.hcl"
	varsFileName = "context.vars.hcl"
)

// topLevel are the blocks a playbook file may hold.
var topLevel = map[string]bool{
	"variable": true, "locals": true, "plugin": true, "load_balancer": true,
	"database": true, "node_pool": true, "step": true, "rollout": true,
	"preflight": true, "verify": true,
}

// TestDocsHCL checks every ```hcl block of README.md and docs/ (see the
// package comment for how each kind of block is checked).
func TestDocsHCL(t *testing.T) {
	files, err := DocFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := loadContext(t)
	checked := 0
	for _, file := range files {
		fences, err := HCLFences(file)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, f := range fences {
			name := strings.TrimPrefix(f.File, root+"/") + fmt.Sprintf(":%d", f.Line)
			f.File = strings.TrimPrefix(f.File, root+"/")
			t.Run(name, func(t *testing.T) {
				checkHCL(t, f, ctx)
			})
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d hcl blocks found: is the extraction broken?", checked)
	}
}

func checkHCL(t *testing.T, f Fence, ctx *context) {
	if f.Directive == "skip" {
		t.Skipf("%s: doctest: skip %s", f.Pos(0), f.Reason)
	}
	file, diags := hclsyntax.ParseConfig([]byte(f.Code), snippetFile, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: not valid HCL:\n%s", f.Pos(0), render(f, diags))
	}
	if f.Directive == "syntax-only" {
		t.Logf("%s: syntax only (%s)", f.Pos(0), f.Reason)
		return
	}
	body := file.Body.(*hclsyntax.Body)
	blocksOK := true
	for _, b := range body.Blocks {
		if !topLevel[b.Type] {
			blocksOK = false
		}
	}
	_, hasCluster := body.Attributes["cluster"]
	switch {
	case isLockFile(body):
		checkLockFile(t, f)
	case len(body.Blocks) == 0 && len(body.Attributes) > 0 && !hasCluster:
		checkVarsFile(t, f, body, ctx)
	case blocksOK && (len(body.Blocks) > 0 || hasCluster) && (len(body.Attributes) == 0 || (hasCluster && len(body.Attributes) == 1)):
		checkPlaybook(t, f, body, ctx)
	default:
		t.Logf("%s: not a playbook nor a variables file (a part of a block): syntax checked only", f.Pos(0))
	}
}

// isLockFile says whether a block is an upshift.lock.hcl: plugin blocks
// holding a sha256.
func isLockFile(body *hclsyntax.Body) bool {
	if len(body.Blocks) == 0 || len(body.Attributes) > 0 {
		return false
	}
	for _, b := range body.Blocks {
		if _, ok := b.Body.Attributes["sha256"]; b.Type != "plugin" || !ok {
			return false
		}
	}
	return true
}

// checkLockFile reads the block as upshift.lock.hcl, as upshift does.
func checkLockFile(t *testing.T, f Fence) {
	path := filepath.Join(t.TempDir(), host.LockFileName)
	if err := os.WriteFile(path, []byte(f.Code), 0o644); err != nil {
		t.Fatal(err)
	}
	lf, err := host.ReadLockFile(path)
	if err != nil {
		t.Fatalf("%s: as a lock file: %v", f.Pos(0), err)
	}
	if len(lf.IgnoredPaths) > 0 {
		t.Fatalf("%s: as a lock file: plugin(s) %v have a path, which upshift init no longer writes (it is ignored, with a warning)", f.Pos(0), lf.IgnoredPaths)
	}
}

// checkVarsFile loads the shipped playbook with the block as its variables
// file. A block that sets only some variables (a variant of one) gets the
// others from three-nodes.vars.hcl.
func checkVarsFile(t *testing.T, f Fence, body *hclsyntax.Body, ctx *context) {
	dir := t.TempDir()
	vf := filepath.Join(dir, snippetFile)
	if err := os.WriteFile(vf, []byte(f.Code), 0o644); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for name, src := range ctx.values {
		if _, set := body.Attributes[name]; !set {
			rest = append(rest, src)
		}
	}
	sort.Strings(rest)
	files := []string{vf}
	if len(rest) > 0 {
		cf := filepath.Join(dir, varsFileName)
		if err := os.WriteFile(cf, []byte(strings.Join(rest, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = []string{cf, vf}
	}
	p := playbooks.NewParser()
	pb, diags := p.Load(shipped, playbooks.LoadOptions{VarFiles: files, Env: []string{}})
	diags = append(diags, graphAndPlan(pb, diags)...)
	if diags.HasErrors() {
		t.Fatalf("%s: as a variables file of playbooks/rolling-upgrade:\n%s", f.Pos(0), render(f, diags))
	}
}

func graphAndPlan(pb *playbooks.Playbook, diags hcl.Diagnostics) hcl.Diagnostics {
	if diags.HasErrors() || pb == nil {
		return nil
	}
	g, ds := runner.BuildGraph(pb)
	if ds.HasErrors() {
		return ds
	}
	_, ds2 := runner.MakePlan(g)
	return append(ds, ds2...)
}

// checkPlaybook loads the block as a playbook file, with what it refers to
// and does not declare taken from the shipped playbook.
func checkPlaybook(t *testing.T, f Fence, body *hclsyntax.Body, ctx *context) {
	declared := declarations(body, nil)
	added := map[string]bool{}
	var extra []string
	var queue []string
	queue = append(queue, references(body)...)
	for len(queue) > 0 {
		ref := queue[0]
		queue = queue[1:]
		if declared[ref] != "" || added[ref] {
			continue
		}
		d, ok := ctx.decls[ref]
		if !ok {
			continue // the loader reports it
		}
		added[ref] = true
		// A rollout step brings its whole rollout.
		for k, v := range ctx.decls {
			if v.src == d.src {
				added[k] = true
			}
		}
		extra = append(extra, d.src)
		queue = append(queue, d.refs...)
	}
	sort.Strings(extra)
	sources := map[string]string{snippetFile: f.Code}
	if len(extra) > 0 {
		sources[contextFile] = strings.Join(dedupe(extra), "\n\n") + "\n"
	}
	// Values for the declared variables that the context's variables file sets.
	vars := declarations(body, nil)
	for k := range added {
		vars[k] = "context"
	}
	var vals []string
	for name, src := range ctx.values {
		if vars["var."+name] != "" {
			vals = append(vals, src)
		}
	}
	sort.Strings(vals)
	dir := t.TempDir()
	var opts playbooks.LoadOptions
	opts.Env = []string{}
	if len(vals) > 0 {
		vf := filepath.Join(dir, varsFileName)
		if err := os.WriteFile(vf, []byte(strings.Join(vals, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		opts.VarFiles = []string{vf}
	}
	p := playbooks.NewParser()
	pb, diags := p.LoadFiles(dir, sources, opts)
	diags = append(diags, graphAndPlan(pb, diags)...)
	if diags.HasErrors() {
		t.Fatalf("%s: as a playbook (standard contracts; taken from playbooks/rolling-upgrade: %s):\n%s",
			f.Pos(0), keys(added), render(f, diags))
	}
}

// decl is one declaration of the shipped playbook: its source (a whole
// block; a local as a locals block of its own) and what it refers to.
type decl struct {
	src  string
	refs []string
}

type context struct {
	decls  map[string]decl   // var.X, local.X, KIND.NAME, step.X, rollout.X
	values map[string]string // variable name -> its line(s) in three-nodes.vars.hcl
}

func loadContext(t *testing.T) *context {
	c := &context{decls: map[string]decl{}, values: map[string]string{}}
	names, _ := filepath.Glob(filepath.Join(shipped, "*.hcl"))
	if len(names) == 0 {
		t.Fatal("no shipped playbook")
	}
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, n, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		body := file.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			text := string(b.Range().SliceBytes(src))
			if b.Type == "locals" {
				for name, a := range b.Body.Attributes {
					c.decls["local."+name] = decl{
						src:  "locals {\n  " + name + " = " + string(a.Expr.Range().SliceBytes(src)) + "\n}",
						refs: references(a.Expr),
					}
				}
				continue
			}
			d := decl{src: text, refs: references(b.Body)}
			for k := range declarations(&hclsyntax.Body{Blocks: hclsyntax.Blocks{b}}, nil) {
				c.decls[k] = d
			}
		}
	}
	src, err := os.ReadFile(contextVars)
	if err != nil {
		t.Fatal(err)
	}
	file, diags := hclsyntax.ParseConfig(src, contextVars, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for name, a := range file.Body.(*hclsyntax.Body).Attributes {
		c.values[name] = name + " = " + string(a.Expr.Range().SliceBytes(src))
	}
	return c
}

// declarations lists what a body declares at the top level: var.X, local.X,
// KIND.NAME, step.X (rollout steps included) and rollout.X.
func declarations(body *hclsyntax.Body, into map[string]string) map[string]string {
	if into == nil {
		into = map[string]string{}
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			into["var."+b.Labels[0]] = "snippet"
		case "locals":
			for name := range b.Body.Attributes {
				into["local."+name] = "snippet"
			}
		case "load_balancer", "database", "node_pool", "step":
			into[b.Type+"."+b.Labels[0]] = "snippet"
		case "rollout":
			into["rollout."+b.Labels[0]] = "snippet"
			for _, s := range b.Body.Blocks {
				if s.Type == "step" && len(s.Labels) > 0 {
					into["step."+s.Labels[0]] = "snippet"
				}
			}
		}
	}
	return into
}

// references lists what a node refers to: var.X, local.X, KIND.NAME,
// step.X, rollout.X.
func references(n hclsyntax.Node) []string {
	var out []string
	_ = hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		st, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(st.Traversal) < 2 {
			return nil
		}
		attr, ok := st.Traversal[1].(hcl.TraverseAttr)
		if !ok {
			return nil
		}
		switch root := st.Traversal.RootName(); root {
		case "var", "local", "load_balancer", "database", "node_pool", "step", "rollout":
			out = append(out, root+"."+attr.Name)
		}
		return nil
	})
	return out
}

// render shows diagnostics with the document's own line numbers for the
// block's lines.
func render(f Fence, diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		where := "?"
		if d.Subject != nil {
			if filepath.Base(d.Subject.Filename) == snippetFile {
				where = f.Pos(d.Subject.Start.Line)
			} else {
				where = fmt.Sprintf("%s:%d", filepath.Base(d.Subject.Filename), d.Subject.Start.Line)
			}
		}
		fmt.Fprintf(&b, "  %s: %s: %s\n", where, d.Summary, d.Detail)
	}
	return b.String()
}

func keys(m map[string]bool) string {
	if len(m) == 0 {
		return "nothing"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
