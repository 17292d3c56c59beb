package main

import (
	"context"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/lbkit"
)

// LogFormat is the access-log format the metrics action reads (see
// nginxctl.LogFormat).
const LogFormat = nginxctl.LogFormat

func accessLogNotEnabled() error {
	return sdk.ArgError("access_log", "is not set, and nginx open source keeps no traffic counters: add %s to nginx's http block, log the server that proxies to this upstream with `access_log PATH upshift;`, reload nginx, and set access_log = PATH in this plugin's config", LogFormat)
}

// Metrics counts the backend's traffic from the access log (see LogFormat),
// per server by the address the upstream block gives it.
func (l *LB) Metrics(ctx context.Context) (lbkit.Metrics, error) {
	if l.log == nil {
		return lbkit.Metrics{}, accessLogNotEnabled()
	}
	u, _, err := l.load()
	if err != nil {
		return lbkit.Metrics{}, err
	}
	backend, byAddr, err := l.log.Read()
	if err != nil {
		return lbkit.Metrics{}, err
	}
	m := lbkit.Metrics{Backend: backend}
	for i, s := range u.Servers {
		m.Servers = append(m.Servers, lbkit.ServerCounters{Name: l.nameOf(u, i), Counters: byAddr[s.Addr]})
	}
	return m, nil
}
