package playbooks

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// StateBlock is a playbook's top-level `state` block: where the journal,
// history and run lock of the clusters it runs against live. Credentials
// are never in it: the DSN carries no password (a file or the environment
// gives it), and the sealing key is a file the operators keep.
//
//	state {
//	  backend  = "postgres"
//	  dsn      = "postgres://upshift@db.example:5432/upshift_state"
//	  key_file = "/run/secrets/upshift-state.key"
//	}
type StateBlock struct {
	Backend      string // "local" or "postgres"
	DSN          string
	PasswordFile string
	KeyFile      string
	Retry        time.Duration
	DeclRange    hcl.Range
}

var stateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "backend", Required: true},
		{Name: "dsn"},
		{Name: "password_file"},
		{Name: "key_file"},
		{Name: "retry"},
	},
}

// decodeState decodes the playbook's `state` blocks (at most one), once
// variables and locals are known: each attribute is a string known before
// the run, and none may be sensitive (none holds a secret).
func (pb *Playbook) decodeState(blocks []*hcl.Block) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i, b := range blocks {
		if i > 0 {
			diags = append(diags, duplicate("state block", "state", blocks[0].DefRange, b.DefRange))
			continue
		}
		content, ds := b.Body.Content(stateSchema)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			continue
		}
		st := &StateBlock{DeclRange: b.DefRange}
		str := func(name string) (string, *hcl.Attribute, bool) {
			a, ok := content.Attributes[name]
			if !ok {
				return "", nil, true
			}
			v, ds := a.Expr.Value(pb.EvalContext(nil))
			diags = append(diags, ds...)
			if ds.HasErrors() {
				return "", a, false
			}
			bad := func(detail string) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid state setting", Detail: detail, Subject: a.Expr.Range().Ptr()})
			}
			if v.IsMarked() {
				bad(fmt.Sprintf("state.%s cannot come from a sensitive value: no state setting holds a secret (the password and the key are files).", name))
				return "", a, false
			}
			if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
				bad(fmt.Sprintf("state.%s is a string known before the run (a literal, a variable or a local).", name))
				return "", a, false
			}
			return v.AsString(), a, true
		}
		var ok bool
		var a *hcl.Attribute
		if st.Backend, a, ok = str("backend"); ok && st.Backend != "local" && st.Backend != "postgres" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid state backend", Detail: fmt.Sprintf("state.backend is \"local\" (the state folder) or \"postgres\", not %q.", st.Backend), Subject: a.Expr.Range().Ptr()})
		}
		if st.DSN, a, ok = str("dsn"); ok && hasPassword(st.DSN) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Password in the state DSN", Detail: "A playbook is shared and versioned: the state DSN must not hold a password. Give it in a file (password_file, or UPSHIFT_STATE_PASSWORD_FILE), PGPASSWORD or PGPASSFILE.", Subject: a.Expr.Range().Ptr()})
		}
		if ok && st.Backend == "postgres" && st.DSN == "" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing state DSN", Detail: "state.backend = \"postgres\" needs dsn (or UPSHIFT_STATE_DSN when the playbook leaves it out: omit backend here then).", Subject: b.DefRange.Ptr()})
		}
		st.PasswordFile, _, _ = str("password_file")
		st.KeyFile, _, _ = str("key_file")
		if r, a, ok := str("retry"); ok && r != "" {
			d, err := time.ParseDuration(r)
			if err != nil || d <= 0 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid state retry", Detail: fmt.Sprintf("state.retry is a positive duration such as \"60s\", not %q.", r), Subject: a.Expr.Range().Ptr()})
			}
			st.Retry = d
		}
		pb.State = st
	}
	return diags
}

// hasPassword reports whether a DSN, URL or key=value form, holds a
// password.
func hasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, ok := u.User.Password()
		return ok || u.Query().Get("password") != ""
	}
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "password=") {
			return true
		}
	}
	return false
}

// State is the playbook's `state` block as phase 1 decoded it (nil when it
// has none, or when the parse failed before reaching it): commands that
// read state without loading plugins (status, abort) take it from here.
func (c *Parsed) State() *StateBlock {
	if c == nil || c.pb == nil {
		return nil
	}
	return c.pb.State
}
