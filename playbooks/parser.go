package playbooks

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-version"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// SchemaSource returns the schema of the plugin that implements a resource
// of the given kind. The default, ContractSchemas, answers with the kind's
// standard contract, which is all validate and plan need.
type SchemaSource func(plugin *PluginBlock, kind schema.Kind) (*schema.PluginSchema, error)

// ContractSchemas is the SchemaSource used before real plugins are known.
func ContractSchemas(_ *PluginBlock, kind schema.Kind) (*schema.PluginSchema, error) {
	return schema.ContractPlugin(kind), nil
}

// LoadOptions are the inputs of loading beyond the folder.
type LoadOptions struct {
	// Vars are -var name=value flags, in order.
	Vars []string
	// VarFiles are -var-file paths (.hcl or .json), in order.
	VarFiles []string
	// Env is the environment searched for UPSHIFT_VAR_<name>; nil means
	// os.Environ().
	Env []string
	// Schemas supplies plugin schemas to Load; nil means ContractSchemas.
	// Parse does not use it: Decode takes the schemas.
	Schemas SchemaSource
}

var fileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cluster"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "plugin", LabelNames: []string{"name"}},
		{Type: string(schema.KindLoadBalancer), LabelNames: []string{"name"}},
		{Type: string(schema.KindDatabase), LabelNames: []string{"name"}},
		{Type: string(schema.KindNodePool), LabelNames: []string{"name"}},
		{Type: "step", LabelNames: []string{"name"}},
		{Type: "rollout", LabelNames: []string{"name"}},
		{Type: "preflight", LabelNames: []string{"name"}},
		{Type: "verify", LabelNames: []string{"name"}},
		{Type: "state"},
	},
}

// Parser reads playbook and variable files and keeps them for rendering
// diagnostics with source snippets.
type Parser struct {
	p *hclparse.Parser
	// total is the size of every source given to ParseSource.
	total int
	// refused holds the files refused for nesting too deep, unparsed.
	refused map[string]*hcl.File
	// ReadFile reads every playbook and variables file; nil means
	// os.ReadFile. Tests count reads through it.
	ReadFile func(path string) ([]byte, error)
}

// NewParser returns an empty parser.
func NewParser() *Parser { return &Parser{p: hclparse.NewParser()} }

// Files returns every file read so far, by name, with the sources of
// files refused before parsing (for their diagnostics' snippets).
func (p *Parser) Files() map[string]*hcl.File {
	if len(p.refused) == 0 {
		return p.p.Files()
	}
	files := make(map[string]*hcl.File, len(p.p.Files())+len(p.refused))
	for name, f := range p.refused {
		files[name] = f
	}
	for name, f := range p.p.Files() {
		files[name] = f
	}
	return files
}

// Size limits on what a playbook may hold, so that an untrusted playbook
// gets a diagnostic rather than minutes of parsing: each file (playbook or
// variables file) and all of them together. A file is large enough for the
// variables of a 10,000-node cluster (about 1.3 MB); 4 MiB of the slowest
// input (chained locals) still validates in a few seconds.
const (
	MaxFileBytes     = 2 << 20
	MaxPlaybookBytes = 4 << 20
)

// ParseSource parses one file's contents (used by tests and the fuzzer).
// It refuses a file over MaxFileBytes, or one that takes the files read by
// p over MaxPlaybookBytes.
func (p *Parser) ParseSource(src []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	p.total += len(src)
	switch {
	case len(src) > MaxFileBytes:
		return nil, tooLarge(filename, fmt.Sprintf("The file %s is %s; a playbook or variables file may hold at most %s.", filename, sizeString(len(src)), sizeString(MaxFileBytes)))
	case p.total > MaxPlaybookBytes:
		return nil, tooLarge(filename, fmt.Sprintf("With the file %s, the playbook's files hold %s; a playbook and its variables files may hold at most %s together.", filename, sizeString(p.total), sizeString(MaxPlaybookBytes)))
	}
	json := strings.HasSuffix(filename, ".json")
	if diags := checkNesting(src, filename, json); diags.HasErrors() {
		// Kept for rendering the snippet, not parsed.
		if p.refused == nil {
			p.refused = map[string]*hcl.File{}
		}
		// Up to a little past the place reported: the snippet is its line,
		// which may be the whole file.
		end := min(len(src), diags[0].Subject.End.Byte+40)
		p.refused[filename] = &hcl.File{Body: hcl.EmptyBody(), Bytes: src[:end]}
		return nil, diags
	}
	if json {
		return p.p.ParseJSON(src, filename)
	}
	return p.parseHCL(src, filename)
}

// parseFile reads and parses path, once: a file already parsed is not read
// again.
func (p *Parser) parseFile(path string) (*hcl.File, hcl.Diagnostics) {
	if f := p.p.Files()[path]; f != nil {
		return f, nil
	}
	src, err := p.read(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Failed to read file",
			Detail:   fmt.Sprintf("The configuration file %q could not be read.", path),
		}}
	}
	return p.ParseSource(src, path)
}

func (p *Parser) read(path string) ([]byte, error) {
	if p.ReadFile != nil {
		return p.ReadFile(path)
	}
	return os.ReadFile(path)
}

// Load reads every .hcl file of dir (not its subfolders), applies variables
// and returns the checked playbook: Parse, then Decode with opts.Schemas.
// Diagnostics carry file, line and column; render them with
// WriteDiagnostics and the parser's Files.
func (p *Parser) Load(dir string, opts LoadOptions) (*Playbook, hcl.Diagnostics) {
	parsed, diags := p.Parse(dir, opts)
	return parsed.decodeAfter(diags, opts.Schemas)
}

// LoadFiles is Load for in-memory sources, keyed by file name; dir is used
// to resolve relative paths.
func (p *Parser) LoadFiles(dir string, sources map[string]string, opts LoadOptions) (*Playbook, hcl.Diagnostics) {
	parsed, diags := p.ParseFiles(dir, sources, opts)
	return parsed.decodeAfter(diags, opts.Schemas)
}

// decodeAfter finishes a one-call load: Decode unless phase 1 failed.
func (c *Parsed) decodeAfter(diags hcl.Diagnostics, schemas SchemaSource) (*Playbook, hcl.Diagnostics) {
	if c == nil {
		return nil, diags
	}
	if diags.HasErrors() {
		return c.pb, diags
	}
	pb, ds := c.Decode(schemas)
	return pb, append(diags, ds...)
}

// Parse is the first phase of loading: it reads every .hcl file of dir (not
// its subfolders) and every -var-file once, gives variables their values and
// validates them, evaluates locals, and decodes plugin blocks and each
// resource's header (kind, name, plugin). That is enough to know which
// plugins the playbook needs (Requirements); Decode, the second phase, reads
// nothing more. On errors the result may be nil.
func (p *Parser) Parse(dir string, opts LoadOptions) (*Parsed, hcl.Diagnostics) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read playbook folder",
			Detail:   fmt.Sprintf("The playbook folder %s cannot be read: %s.", dir, err),
		}}
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") && e.Name() != "upshift.lock.hcl" {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "No playbook files",
			Detail:   fmt.Sprintf("The folder %s has no .hcl files. A playbook is a folder of .hcl files.", dir),
		}}
	}
	var diags hcl.Diagnostics
	var files []*hcl.File
	for _, name := range names {
		f, ds := p.parseFile(name)
		diags = append(diags, ds...)
		if f != nil {
			files = append(files, f)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	c, ds := p.parse(dir, files, opts)
	if c != nil {
		c.requireSteps = true
	}
	return c, append(diags, ds...)
}

// checkHasSteps refuses a playbook folder with nothing to run. Decode
// checks it last, and only after Parse (a folder, what validate, plan and
// run read): ParseFiles and LoadFiles accept partial playbooks, for tests
// of one feature.
func (c *Parsed) checkHasSteps() hcl.Diagnostics {
	if len(c.steps) > 0 || len(c.rollouts) > 0 {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "No steps",
		Detail:   "No steps: a playbook needs at least one step or rollout block; there is nothing to run.",
		Subject:  c.start.Ptr(),
	}}
}

// ParseFiles is Parse for in-memory sources, keyed by file name; dir is
// used to resolve relative paths. Unlike Parse, it accepts a playbook
// without steps.
func (p *Parser) ParseFiles(dir string, sources map[string]string, opts LoadOptions) (*Parsed, hcl.Diagnostics) {
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	var diags hcl.Diagnostics
	var files []*hcl.File
	for _, n := range names {
		f, ds := p.ParseSource([]byte(sources[n]), n)
		diags = append(diags, ds...)
		if f != nil {
			files = append(files, f)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	c, ds := p.parse(dir, files, opts)
	return c, append(diags, ds...)
}

// Parsed is a playbook after the first phase of loading: its files read,
// variables and locals known, plugins and resource headers decoded, but
// resource config, steps and rollouts not yet decoded, since they need the
// plugins' schemas.
type Parsed struct {
	pb         *Playbook
	resources  []*resourceHeader
	steps      []*hcl.Block
	rollouts   []*hcl.Block
	preflights []*hcl.Block
	verifies   []*hcl.Block
	// start is the beginning of the first playbook file, where a problem
	// with the playbook as a whole is reported.
	start hcl.Range
	// requireSteps is set by Parse: Decode refuses a folder without steps.
	requireSteps bool
}

// Requirement is a plugin the playbook's resources use.
type Requirement struct {
	// Plugin is its plugin block, or the implicit one a resource's plugin
	// name stands for.
	Plugin *PluginBlock
	// Resources are the addresses of the resources it serves, sorted; each
	// gets its own plugin instance.
	Resources []string
}

// Requirements lists the plugins the resources use, sorted by name. A
// plugin block no resource names is not required.
func (c *Parsed) Requirements() []Requirement {
	byName := map[string]*Requirement{}
	for _, h := range c.resources {
		name := h.res.PluginName
		if byName[name] == nil {
			byName[name] = &Requirement{Plugin: c.pb.Plugins[name]}
		}
		byName[name].Resources = append(byName[name].Resources, h.res.Address())
	}
	out := make([]Requirement, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		r := byName[name]
		sort.Strings(r.Resources)
		out = append(out, *r)
	}
	return out
}

// Files returns the playbook's files and variables files, by name.
func (c *Parsed) Files() map[string]*hcl.File { return c.pb.Files }

func (p *Parser) parse(dir string, files []*hcl.File, opts LoadOptions) (*Parsed, hcl.Diagnostics) {
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	pb := &Playbook{
		Dir:       dir,
		Files:     p.Files(),
		Variables: map[string]*Variable{},
		Locals:    map[string]*Local{},
		Plugins:   map[string]*PluginBlock{},
		Resources: map[string]*Resource{},
	}
	c := &Parsed{pb: pb}
	if len(files) > 0 {
		c.start = fileStart(files[0])
	}
	var diags hcl.Diagnostics
	var resourceBlocks []*hcl.Block
	var localsBlocks []*hcl.Block

	var clusterAttr *hcl.Attribute
	var stateBlocks []*hcl.Block
	for _, f := range files {
		content, ds := f.Body.Content(fileSchema)
		diags = append(diags, ds...)
		if a, ok := content.Attributes["cluster"]; ok {
			if clusterAttr != nil {
				diags = append(diags, duplicate("cluster name", "cluster", clusterAttr.Range, a.Range))
			} else {
				clusterAttr = a
			}
		}
		for _, b := range content.Blocks {
			switch b.Type {
			case "variable":
				v, ds := decodeVariable(b)
				diags = append(diags, ds...)
				if v == nil {
					continue
				}
				if prev, ok := pb.Variables[v.Name]; ok {
					diags = append(diags, duplicate("variable", v.Name, prev.DeclRange, b.DefRange))
					continue
				}
				pb.Variables[v.Name] = v
			case "locals":
				localsBlocks = append(localsBlocks, b)
			case "plugin":
				pl, ds := decodePlugin(b)
				diags = append(diags, ds...)
				if pl == nil {
					continue
				}
				if prev, ok := pb.Plugins[pl.Name]; ok {
					diags = append(diags, duplicate("plugin", pl.Name, prev.DeclRange, b.DefRange))
					continue
				}
				pb.Plugins[pl.Name] = pl
			case "step":
				c.steps = append(c.steps, b)
			case "rollout":
				c.rollouts = append(c.rollouts, b)
			case "preflight":
				c.preflights = append(c.preflights, b)
			case "verify":
				c.verifies = append(c.verifies, b)
			case "state":
				stateBlocks = append(stateBlocks, b)
			default:
				resourceBlocks = append(resourceBlocks, b)
			}
		}
	}

	for _, b := range localsBlocks {
		attrs, ds := b.Body.JustAttributes()
		diags = append(diags, ds...)
		for name, a := range attrs {
			if prev, ok := pb.Locals[name]; ok {
				diags = append(diags, duplicate("local value", name, prev.DeclRange, a.Range))
				continue
			}
			pb.Locals[name] = &Local{Name: name, Expr: a.Expr, DeclRange: a.Range}
		}
	}

	// Values first: everything else may refer to variables and locals.
	diags = append(diags, pb.assignVariables(p, opts)...)
	if diags.HasErrors() {
		return c, diags
	}
	// Validations see only their own variable, never a local, so they run
	// while the locals are worked out. A failed validation is reported
	// alone: locals built from an invalid value would only add noise.
	validated := make(chan hcl.Diagnostics, 1)
	go func() { validated <- pb.validateVariables() }()
	localDiags := pb.evaluateLocals()
	diags = append(diags, <-validated...)
	if diags.HasErrors() {
		return c, diags
	}
	diags = append(diags, localDiags...)
	if diags.HasErrors() {
		pb.suggestNames(diags)
		return c, diags
	}

	if clusterAttr != nil {
		diags = append(diags, pb.decodeClusterName(clusterAttr)...)
	}
	diags = append(diags, pb.decodeState(stateBlocks)...)

	seen := map[string]*resourceHeader{}
	for _, b := range resourceBlocks {
		h, ds := pb.decodeResourceHeader(b)
		diags = append(diags, ds...)
		if h == nil {
			continue
		}
		if prev, ok := seen[h.res.Address()]; ok {
			diags = append(diags, duplicate(string(h.res.Kind), h.res.Name, prev.res.DeclRange, b.DefRange))
			continue
		}
		seen[h.res.Address()] = h
		c.resources = append(c.resources, h)
	}
	pb.suggestNames(diags)
	return c, diags
}

// Decode is the second phase of loading: it decodes each resource's config
// and nodes against its plugin's schema from schemas (nil means
// ContractSchemas), then steps and rollouts, and checks references. It reads
// no file. Each call returns a new Playbook, so Decode may run again with
// other schemas.
func (c *Parsed) Decode(schemas SchemaSource) (*Playbook, hcl.Diagnostics) {
	pb, diags := c.decode(schemas)
	pb.suggestNames(diags)
	return pb, diags
}

func (c *Parsed) decode(schemas SchemaSource) (*Playbook, hcl.Diagnostics) {
	if schemas == nil {
		schemas = ContractSchemas
	}
	pb := new(Playbook)
	*pb = *c.pb
	pb.Resources = make(map[string]*Resource, len(c.resources))
	pb.Steps, pb.Rollouts, pb.base = nil, nil, nil

	var diags hcl.Diagnostics
	for _, h := range c.resources {
		r, ds := pb.decodeResourceBody(h, schemas)
		diags = append(diags, ds...)
		if r != nil {
			pb.Resources[r.Address()] = r
		}
	}
	if diags.HasErrors() {
		return pb, diags
	}
	// From here on variables, locals and resources are fixed: one shared
	// context serves every expression (read-only, so safe to share across
	// the goroutines of a run).
	pb.base = pb.baseContext()

	for _, b := range c.steps {
		s, ds := pb.decodeStep(b, nil, 0)
		diags = append(diags, ds...)
		if s != nil {
			pb.Steps = append(pb.Steps, s)
		}
	}
	for _, b := range c.rollouts {
		r, ds := pb.decodeRollout(b)
		diags = append(diags, ds...)
		if r == nil {
			continue
		}
		if prev := pb.Rollout(r.Name); prev != nil {
			diags = append(diags, duplicate("rollout", r.Name, prev.DeclRange, b.DefRange))
			continue
		}
		pb.Rollouts = append(pb.Rollouts, r)
		pb.Steps = append(pb.Steps, r.Steps...)
	}
	// Step names are global, rollout steps included, so that an instance
	// address such as step.drain["node-1"] names one thing.
	seen := map[string]*Step{}
	for _, s := range pb.Steps {
		if prev, ok := seen[s.Name]; ok {
			diags = append(diags, duplicate("step", s.Name, prev.DeclRange, s.DeclRange))
			continue
		}
		seen[s.Name] = s
	}
	sort.SliceStable(pb.Steps, func(i, j int) bool { return rangeLess(pb.Steps[i].DeclRange, pb.Steps[j].DeclRange) })
	for _, b := range c.preflights {
		s, ds := pb.decodeProbeBlock(b, probePreflight)
		diags = append(diags, ds...)
		if s == nil {
			continue
		}
		if prev := pb.Preflight(s.Name); prev != nil {
			diags = append(diags, duplicate("preflight", s.Name, prev.DeclRange, s.DeclRange))
			continue
		}
		pb.Preflights = append(pb.Preflights, s)
	}
	for _, b := range c.verifies {
		s, ds := pb.decodeProbeBlock(b, probeVerify)
		diags = append(diags, ds...)
		if s == nil {
			continue
		}
		if prev := pb.VerifyBlock(s.Name); prev != nil {
			diags = append(diags, duplicate("verify", s.Name, prev.DeclRange, s.DeclRange))
			continue
		}
		pb.Verifies = append(pb.Verifies, s)
	}
	diags = append(diags, pb.checkPointOfNoReturn()...)
	if diags.HasErrors() {
		return pb, diags
	}
	diags = append(diags, pb.checkReferences()...)
	if c.requireSteps && !diags.HasErrors() {
		diags = append(diags, c.checkHasSteps()...)
	}
	return pb, diags
}

func rangeLess(a, b hcl.Range) bool {
	if a.Filename != b.Filename {
		return a.Filename < b.Filename
	}
	return a.Start.Byte < b.Start.Byte
}

func duplicate(what, name string, first, again hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s %q", what, name),
		Detail:   fmt.Sprintf("A %s named %q was already declared at %s. Names must be unique within a playbook.", what, name, At(first)),
		Subject:  again.Ptr(),
	}
}

func decodePlugin(b *hcl.Block) (*PluginBlock, hcl.Diagnostics) {
	name := b.Labels[0]
	diags := checkName("plugin", name, b.LabelRanges[0])
	pl := &PluginBlock{Name: name, DeclRange: b.DefRange}
	content, ds := b.Body.Content(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "source"}, {Name: "version"}}})
	diags = append(diags, ds...)
	if a, ok := content.Attributes["source"]; ok {
		diags = append(diags, decodeStaticString(a, &pl.Source)...)
	}
	if a, ok := content.Attributes["version"]; ok {
		ds := decodeStaticString(a, &pl.Version)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if _, err := version.NewConstraint(pl.Version); err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid version constraint",
					Detail:   fmt.Sprintf("%s. A version constraint is one or more comma-separated conditions such as \"1.2.0\", \">= 1.0, < 2.0\" or \"~> 1.2\".", err),
					Subject:  a.Expr.Range().Ptr(),
				})
			}
		}
	}
	if a, ok := content.Attributes["source"]; ok && pl.Source == "" {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid source", Detail: "source is the plugin binary's file name, found in the trusted plugin folders (never a path: a playbook does not choose which binary runs); it cannot be empty.", Subject: a.Expr.Range().Ptr()})
	}
	if pl.Source == "" {
		pl.Source = "upshift-plugin-" + name
	}
	return pl, diags
}

// checkName reports a block label that is not a valid identifier, since the
// name is used in references such as step.<name>.
func checkName(what, name string, rng hcl.Range) hcl.Diagnostics {
	if hclValidIdentifier(name) {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Invalid %s name", what),
		Detail:   fmt.Sprintf("%q is not a valid name: a name starts with a letter or underscore and holds only letters, digits, underscores and dashes.", name),
		Subject:  rng.Ptr(),
	}}
}

func hclValidIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case i > 0 && (r == '-' || (r >= '0' && r <= '9')):
		default:
			return false
		}
	}
	return true
}

// At renders a range as file:line for use inside a message.
func At(rng hcl.Range) string { return fmt.Sprintf("%s:%d", rng.Filename, rng.Start.Line) }

// decodeClusterName decodes the top-level `cluster = "prod-eu"`: a name for
// the cluster the playbook points at, shown beside its identity. It is a
// string known before the run (a literal, a variable or a local), not
// sensitive.
func (pb *Playbook) decodeClusterName(a *hcl.Attribute) hcl.Diagnostics {
	v, diags := a.Expr.Value(pb.EvalContext(nil))
	if diags.HasErrors() {
		return diags
	}
	bad := func(detail string) hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid cluster name", Detail: detail, Subject: a.Expr.Range().Ptr()})
	}
	if v.IsMarked() {
		return bad("cluster names the cluster in messages and in upshift status: it cannot come from a sensitive value.")
	}
	if v.Type() != cty.String || v.IsNull() || !v.IsKnown() || strings.TrimSpace(v.AsString()) == "" {
		return bad("cluster is a name, such as \"prod-eu\": a non-empty string known before the run (a literal, a variable or a local).")
	}
	pb.ClusterName = strings.TrimSpace(v.AsString())
	return diags
}

// fileStart is the first character of f, as a range.
func fileStart(f *hcl.File) hcl.Range {
	rng := f.Body.MissingItemRange()
	rng.Start = hcl.Pos{Line: 1, Column: 1, Byte: 0}
	rng.End = rng.Start
	if len(f.Bytes) > 0 {
		rng.End = hcl.Pos{Line: 1, Column: 2, Byte: 1}
	}
	return rng
}

func tooLarge(filename, detail string) hcl.Diagnostics {
	start := hcl.Pos{Line: 1, Column: 1}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Playbook too large",
		Detail:   detail,
		Subject:  &hcl.Range{Filename: filename, Start: start, End: start},
	}}
}

func sizeString(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)/1024)
}
