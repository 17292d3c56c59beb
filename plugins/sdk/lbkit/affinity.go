package lbkit

import (
	"context"
	"fmt"
)

// Affinity is whether the load balancer keeps a client on one server
// (session affinity, sticky sessions). The rolling upgrade needs it in
// its mixed-version window: an old node reads database A, which never sees
// a write an upgraded node made on B, so a client moved from a new node to
// an old one reads its own acknowledged write back as missing.
type Affinity struct {
	On bool
	// How says what keeps a client on its server ("cookie SRV inserted by
	// HAProxy", "hash $cookie_session consistent"); when off, what the
	// load balancer does instead.
	How string
	// Enable says what to configure to turn it on (when off).
	Enable string
}

// AffinityReporter is implemented by a Backend that can tell whether
// session affinity is on: preflight then warns when it is off, and its
// drain keeps a server's persistent sessions until they end or the drain
// timeout passes.
type AffinityReporter interface {
	Affinity(ctx context.Context) (Affinity, error)
}

// WarningPrefix starts a progress line that is a warning: something the
// operator should know before the run, which does not stop it (the runner
// lists these lines with the preflight's verdict).
const WarningPrefix = "warning: "

// AffinityWarning is preflight's warning for affinity off; "" when on.
func AffinityWarning(a Affinity) string {
	if a.On {
		return ""
	}
	return fmt.Sprintf("%ssession affinity is off (%s): while old and new versions both serve, a client can write through an upgraded node (database B) and read through an old one (database A, which never sees that write), and find its own write missing; %s", WarningPrefix, a.How, a.Enable)
}
