// The one flattening of hcl.Diagnostics into an error, for what a run
// records and reports: a step's failure is one line in the journal and in
// events, not a rendered diagnostic with a snippet.

package runner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/upshift-dev/upshift/playbooks"
)

// diagsError joins the errors of diags into one, each as "file:line:
// summary: detail" (warnings are left out). Plugin diagnostics reach it
// through plugins.Diagnostics.HCL, so they read the same way.
func diagsError(diags hcl.Diagnostics) error {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s: %s", playbooks.At(*d.Subject), msg)
		}
		parts = append(parts, msg)
	}
	return errors.New(strings.Join(parts, "; "))
}
