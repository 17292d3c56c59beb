package playbooks

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// Guard is a rollout's `guard` block: a traffic budget the runner enforces
// while the rollout runs. It samples the load balancer's `metrics` action
// every Interval, from the rollout's first instance start until its last
// instance ends, and when the errors the load balancer counted over the
// last Window break a budget it applies the rollout's on_failure at once.
//
// Errors are http_5xx + connection_errors + response_errors, plus the
// failed requests of its probes. A budget is unset when negative.
type Guard struct {
	// Metrics is the load_balancer resource whose metrics action is
	// sampled; nil when the guard has only probes.
	Metrics *Resource
	// Action is Metrics' metrics action.
	Action *schema.Action
	// Interval is the sampling period; Window the sliding window the
	// budgets apply to.
	Interval time.Duration
	Window   time.Duration
	// MaxErrors: errors of the whole backend over the window.
	MaxErrors int
	// MaxServerErrors: errors of any one server over the window.
	MaxServerErrors int
	// MaxErrorRate is the largest share of the backend's requests over the
	// window that may be errors, in percent (0.5 for "0.5%"); it applies
	// once the window holds at least MinRequests requests.
	MaxErrorRate float64
	MinRequests  int
	// Probes are URLs the guard requests itself, through the load
	// balancer, from the rollout's first instance start until its end;
	// their failures count as errors and their requests as requests.
	Probes    []*GuardProbe
	DeclRange hcl.Range
}

// GuardProbe is a guard's `probe` block: a URL requested every Every.
type GuardProbe struct {
	URL     string
	Every   time.Duration
	Timeout time.Duration
	// Expect are the status codes that count as success; nil for any 2xx
	// or 3xx (redirects are not followed).
	Expect    []int
	DeclRange hcl.Range
}

// Succeeded reports whether a probe answered with code succeeded.
func (p *GuardProbe) Succeeded(code int) bool {
	if p.Expect == nil {
		return code >= 200 && code < 400
	}
	for _, c := range p.Expect {
		if c == code {
			return true
		}
	}
	return false
}

// Redacted is the probe's URL with its password, if any, replaced by
// xxxxx, for plans and messages.
func (p *GuardProbe) Redacted() string {
	if u, err := url.Parse(p.URL); err == nil {
		return u.Redacted()
	}
	return p.URL
}

// Source says what the guard watches, for plans: "load_balancer.front.metrics",
// "2 probes" or both.
func (g *Guard) Source() string {
	var parts []string
	if g.Metrics != nil {
		parts = append(parts, g.Metrics.Address()+".metrics")
	}
	switch len(g.Probes) {
	case 0:
	case 1:
		parts = append(parts, "probe "+g.Probes[0].Redacted())
	default:
		parts = append(parts, fmt.Sprintf("%d probes", len(g.Probes)))
	}
	return strings.Join(parts, " and ")
}

// Guard defaults.
const (
	DefaultGuardInterval    = time.Second
	DefaultGuardWindow      = 10 * time.Second
	DefaultGuardMinRequests = 20
	// MinGuardInterval is the shortest sampling period a guard takes: a
	// load balancer asked more often spends its time answering.
	MinGuardInterval = 100 * time.Millisecond
	// Probe defaults; MinProbeEvery is the shortest period between a
	// probe's requests.
	DefaultProbeEvery   = time.Second
	DefaultProbeTimeout = 2 * time.Second
	MinProbeEvery       = 10 * time.Millisecond
)

var guardSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "metrics"},
		{Name: "interval"},
		{Name: "window"},
		{Name: "max_errors"},
		{Name: "max_server_errors"},
		{Name: "max_error_rate"},
		{Name: "min_requests"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "probe"}},
}

var probeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "url", Required: true},
		{Name: "every"},
		{Name: "expect"},
		{Name: "timeout"},
	},
}

func (pb *Playbook) decodeProbe(b *hcl.Block) (*GuardProbe, hcl.Diagnostics) {
	p := &GuardProbe{Every: DefaultProbeEvery, Timeout: DefaultProbeTimeout, DeclRange: b.DefRange}
	content, diags := b.Body.Content(probeSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	bad := func(rng hcl.Range, summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
	}
	a := content.Attributes["url"]
	var s string
	if ds := decodeStaticString(a, &s); ds.HasErrors() {
		diags = append(diags, ds...)
	} else if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(a.Expr.Range(), "Invalid probe url", fmt.Sprintf("url is the http:// or https:// address the probe requests through the load balancer, such as \"http://lb.example:8080/healthz\"; %q is not.", s))
	} else {
		p.URL = s
	}
	if a, ok := content.Attributes["every"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if d < MinProbeEvery {
				bad(a.Expr.Range(), "Invalid probe every", fmt.Sprintf("every is how often the probe requests its url: at least %s, not %s.", MinProbeEvery, d))
			} else {
				p.Every = d
			}
		}
	}
	if a, ok := content.Attributes["timeout"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if d <= 0 {
				bad(a.Expr.Range(), "Invalid probe timeout", "timeout is how long a probe's request may take before it counts as failed: more than 0s.")
			} else {
				p.Timeout = d
			}
		}
	}
	if a, ok := content.Attributes["expect"]; ok {
		v, ds := a.Expr.Value(pb.EvalContext(nil))
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			v, _ = v.Unmark()
			codes, ok := statusCodes(v)
			if !ok {
				bad(a.Expr.Range(), "Invalid probe expect", "expect lists the HTTP status codes that count as success, each a whole number from 100 to 599, such as [200, 204].")
			} else {
				p.Expect = codes
			}
		}
	}
	return p, diags
}

// statusCodes reads a non-empty list of HTTP status codes.
func statusCodes(v cty.Value) ([]int, bool) {
	if v.IsNull() || !v.IsKnown() || !(v.Type().IsListType() || v.Type().IsTupleType() || v.Type().IsSetType()) || v.LengthInt() == 0 {
		return nil, false
	}
	codes := []int{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		n, ok := wholeNumber(e)
		if !ok || n < 100 || n > 599 {
			return nil, false
		}
		codes = append(codes, n)
	}
	return codes, true
}

func (pb *Playbook) decodeGuard(b *hcl.Block) (*Guard, hcl.Diagnostics) {
	g := &Guard{Interval: DefaultGuardInterval, Window: DefaultGuardWindow, MaxErrors: -1, MaxServerErrors: -1, MaxErrorRate: -1, MinRequests: DefaultGuardMinRequests, DeclRange: b.DefRange}
	content, diags := b.Body.Content(guardSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	bad := func(rng hcl.Range, summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
	}

	for _, blk := range content.Blocks {
		p, ds := pb.decodeProbe(blk)
		diags = append(diags, ds...)
		if p != nil {
			g.Probes = append(g.Probes, p)
		}
	}
	m, ok := content.Attributes["metrics"]
	if !ok {
		if len(content.Blocks) == 0 {
			bad(b.DefRange, "Guard without a source", "A guard needs metrics (the load_balancer whose metrics action it samples, such as load_balancer.front), at least one probe block, or both.")
		}
		if a, ok := content.Attributes["max_server_errors"]; ok {
			bad(a.NameRange, "max_server_errors without metrics", "max_server_errors counts the errors of each server, which only the load balancer's metrics tell; set metrics too, or use max_errors.")
		}
	}
	g.decodeMetrics(pb, m, bad)
	return g.decodeBudgets(pb, b, content, diags)
}

func (g *Guard) decodeMetrics(pb *Playbook, m *hcl.Attribute, bad func(hcl.Range, string, string)) {
	if m == nil {
		return
	}
	tr, ds := hcl.AbsTraversalForExpr(m.Expr)
	var parts []string
	if !ds.HasErrors() {
		for _, t := range tr {
			switch t := t.(type) {
			case hcl.TraverseRoot:
				parts = append(parts, t.Name)
			case hcl.TraverseAttr:
				parts = append(parts, t.Name)
			}
		}
	}
	switch {
	case len(parts) != 2 || len(tr) != 2 || parts[0] != string(schema.KindLoadBalancer):
		bad(m.Expr.Range(), "Invalid guard metrics", "metrics names the load_balancer resource whose metrics action the guard samples, such as load_balancer.front.")
	default:
		r, ok := pb.Resources[parts[0]+"."+parts[1]]
		if !ok {
			var names []string
			for _, x := range pb.Resources {
				if x.Kind == schema.KindLoadBalancer {
					names = append(names, x.Name)
				}
			}
			bad(m.Expr.Range(), "Reference to undeclared resource", fmt.Sprintf("No load_balancer named %q is declared%s.", parts[1], suggest(parts[1], names)))
			break
		}
		a := r.Schema.Action("metrics")
		if a == nil {
			bad(m.Expr.Range(), "Invalid guard metrics", fmt.Sprintf("load_balancer %q (plugin %q) has no metrics action, which the guard samples.", r.Name, r.PluginName))
			break
		}
		g.Metrics, g.Action = r, a
	}
}

func (g *Guard) decodeBudgets(pb *Playbook, b *hcl.Block, content *hcl.BodyContent, diags hcl.Diagnostics) (*Guard, hcl.Diagnostics) {
	bad := func(rng hcl.Range, summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
	}
	if a, ok := content.Attributes["interval"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if d < MinGuardInterval {
				bad(a.Expr.Range(), "Invalid guard interval", fmt.Sprintf("interval is how often the guard samples the load balancer's counters: at least %s, not %s.", MinGuardInterval, d))
			} else {
				g.Interval = d
			}
		}
	}
	if a, ok := content.Attributes["window"]; ok {
		d, ds := decodeDuration(a)
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			if d < g.Interval {
				bad(a.Expr.Range(), "Invalid guard window", fmt.Sprintf("window (%s) is the span the budgets apply to, and holds at least two samples: it must be at least the interval (%s).", d, g.Interval))
			} else {
				g.Window = d
			}
		}
	}
	count := func(name string, into *int, min int) bool {
		a, ok := content.Attributes[name]
		if !ok {
			return false
		}
		v, ds := a.Expr.Value(pb.EvalContext(nil))
		diags = append(diags, ds...)
		if ds.HasErrors() {
			return true
		}
		v, _ = v.Unmark()
		n, ok := wholeNumber(v)
		if !ok || n < min {
			bad(a.Expr.Range(), "Invalid guard "+name, fmt.Sprintf("%s is a whole number of at least %d.", name, min))
			return true
		}
		*into = n
		return true
	}
	hasErrors := count("max_errors", &g.MaxErrors, 0)
	hasServer := count("max_server_errors", &g.MaxServerErrors, 0)
	count("min_requests", &g.MinRequests, 1)
	hasRate := false
	if a, ok := content.Attributes["max_error_rate"]; ok {
		hasRate = true
		v, ds := a.Expr.Value(pb.EvalContext(nil))
		diags = append(diags, ds...)
		if !ds.HasErrors() {
			v, _ = v.Unmark()
			pct, ok := percent(v)
			if !ok {
				bad(a.Expr.Range(), "Invalid guard max_error_rate", `max_error_rate is the share of the backend's requests over the window that may fail, a percentage from "0%" to "100%" such as "0.5%".`)
			} else {
				g.MaxErrorRate = pct
			}
		}
	}
	if _, ok := content.Attributes["min_requests"]; ok && !hasRate {
		bad(content.Attributes["min_requests"].NameRange, "min_requests without max_error_rate", "min_requests is how many requests the window must hold before max_error_rate applies; set max_error_rate too, or remove it.")
	}
	if !hasErrors && !hasServer && !hasRate {
		bad(b.DefRange, "Guard without a budget", "A guard needs at least one budget: max_errors (errors of the whole backend over the window), max_server_errors (of any one server) or max_error_rate (a share of the requests).")
	}
	return g, diags
}

// percent reads a percentage string such as "0.5%" or "2%", 0 to 100.
func percent(v cty.Value) (float64, bool) {
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return 0, false
	}
	s, ok := strings.CutSuffix(strings.TrimSpace(v.AsString()), "%")
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, false
	}
	return f, true
}

// GuardErrorCounters names the metrics counters a guard counts as errors.
func GuardErrorCounters() []string {
	return []string{"http_5xx", "connection_errors", "response_errors"}
}

// Budgets describes the guard's budgets, for plans and messages:
// "max_errors 5, max_server_errors 2 over 10s".
func (g *Guard) Budgets() string {
	var parts []string
	if g.MaxErrors >= 0 {
		parts = append(parts, fmt.Sprintf("max_errors %d", g.MaxErrors))
	}
	if g.MaxServerErrors >= 0 {
		parts = append(parts, fmt.Sprintf("max_server_errors %d", g.MaxServerErrors))
	}
	if g.MaxErrorRate >= 0 {
		parts = append(parts, fmt.Sprintf("max_error_rate %s%% (from %d requests)", strconv.FormatFloat(g.MaxErrorRate, 'f', -1, 64), g.MinRequests))
	}
	return strings.Join(parts, ", ") + " over " + g.Window.String()
}
