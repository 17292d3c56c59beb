package playbooks

import (
	"fmt"
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
// Errors are http_5xx + connection_errors + response_errors. A budget is
// unset when negative.
type Guard struct {
	// Metrics is the load_balancer resource whose metrics action is sampled.
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
	DeclRange    hcl.Range
}

// Guard defaults.
const (
	DefaultGuardInterval    = time.Second
	DefaultGuardWindow      = 10 * time.Second
	DefaultGuardMinRequests = 20
	// MinGuardInterval is the shortest sampling period a guard takes: a
	// load balancer asked more often spends its time answering.
	MinGuardInterval = 100 * time.Millisecond
)

var guardSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "metrics", Required: true},
		{Name: "interval"},
		{Name: "window"},
		{Name: "max_errors"},
		{Name: "max_server_errors"},
		{Name: "max_error_rate"},
		{Name: "min_requests"},
	},
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

	m := content.Attributes["metrics"]
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
