// The one conversion from a plugin's diagnostics to HCL's, so that an error
// a plugin reports reads and points like any other error in a playbook.

package plugins

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// HCL converts d into hcl.Diagnostics. A diagnostic that names an argument
// says so in its summary and, when body (the step's `with`, or nil) writes
// that argument, points at its value; anything but an error becomes a
// warning.
func (d Diagnostics) HCL(body hcl.Body) hcl.Diagnostics {
	if len(d) == 0 {
		return nil
	}
	var attrs hcl.Attributes
	out := make(hcl.Diagnostics, 0, len(d))
	for _, x := range d {
		h := &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: x.Summary, Detail: x.Detail}
		if x.Severity == Error {
			h.Severity = hcl.DiagError
		}
		if x.Attribute != "" {
			h.Summary = fmt.Sprintf("argument %q: %s", x.Attribute, x.Summary)
			if attrs == nil && body != nil {
				// A body with nested blocks still yields its attributes.
				attrs, _ = body.JustAttributes()
			}
			if a := attrs[x.Attribute]; a != nil {
				h.Subject = a.Expr.Range().Ptr()
				h.Context = a.Range.Ptr()
			}
		}
		out = append(out, h)
	}
	return out
}
