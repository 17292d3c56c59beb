package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
)

// NodeStatus is what a node looks like from outside: its process, its own
// health answer, its config and what HAProxy thinks of it.
type NodeStatus struct {
	Name       string
	Pid        int // 0: not running
	Healthy    bool
	Health     string // healthz status ("ok", "starting", ...), or why there is none
	Version    string // from GET /version; "" if it did not answer
	ReadOnly   bool
	Processing bool
	DSN        string // the config's db.dsn
	Marker     bool   // <data_dir>/rolling-upgrade exists
	// The load balancer's view. HAProxy: `show stat` and `show servers
	// state`; nginx: the upstream file, where a drained server is "down".
	LBStatus string // UP, DOWN, MAINT, DRAIN, ... ("" if it did not answer)
	LBAdmin  int    // HAProxy's srv_admin_state bits; 0 is READY
	LBActive int    // HAProxy's scur: sessions in flight
}

// InRotation reports whether the load balancer sends the node traffic: UP
// and READY.
func (n NodeStatus) InRotation() bool { return n.LBStatus == "UP" && n.LBAdmin == 0 }

// Status is a snapshot of the whole lab.
type Status struct {
	LB    string // haproxy or nginx
	LBPid int    // the load balancer's master pid; 0: not running
	LBErr string // why the load balancer's view is missing, if it is
	Nodes []NodeStatus
}

// Inspect looks at every node and at HAProxy. It never fails: what cannot
// be seen is reported as such.
func (s *State) Inspect(ctx context.Context) Status {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string, v any) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return resp.StatusCode, json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(v)
	}
	st := Status{LB: s.LB}
	if st.LB == "" {
		st.LB = "haproxy"
	}
	if s.lbRunning() {
		if st.LB == "nginx" {
			st.LBPid = nginxctl.MasterPID(s.NginxCtl().PidFile)
		} else {
			st.LBPid = s.HAProxyCtl().MasterPID()
		}
	}
	for _, n := range s.Nodes {
		ns := NodeStatus{Name: n.Name, Pid: s.Node(n).Pid(), Processing: n.Processing}
		var h struct {
			Status   string `json:"status"`
			ReadOnly bool   `json:"read_only"`
		}
		if code, err := get("http://"+n.Address+"/healthz", &h); err != nil {
			ns.Health = "not answering"
		} else {
			ns.Health, ns.Healthy, ns.ReadOnly = h.Status, code == http.StatusOK, h.ReadOnly
		}
		var v struct {
			Version string `json:"version"`
		}
		if code, err := get("http://"+n.Address+"/version", &v); err == nil && code == http.StatusOK {
			ns.Version = v.Version
		}
		var cfg map[string]any
		if b, err := os.ReadFile(n.ConfigFile); err == nil && json.Unmarshal(b, &cfg) == nil {
			ns.DSN = fmt.Sprint(cfg["db.dsn"])
		}
		_, err := os.Stat(filepath.Join(n.DataDir, "rolling-upgrade"))
		ns.Marker = err == nil
		st.Nodes = append(st.Nodes, ns)
	}
	if st.LB == "nginx" {
		servers, err := nginxctl.ReadUpstream(s.NginxCtl().Upstream)
		if err != nil {
			st.LBErr = err.Error()
			return st
		}
		for i := range st.Nodes {
			for _, sv := range servers {
				if sv.Name == st.Nodes[i].Name {
					st.Nodes[i].LBStatus = map[bool]string{true: "DOWN (marked)", false: "UP"}[sv.Down]
				}
			}
		}
		return st
	}
	hc := runtimeapi.NewClient(s.HAProxyCtl().Socket, 2*time.Second)
	stats, _, err := hc.Servers(ctx, Backend)
	if err != nil {
		st.LBErr = err.Error()
		return st
	}
	states, err := hc.ServersState(ctx, Backend)
	if err != nil {
		st.LBErr = err.Error()
		return st
	}
	for i := range st.Nodes {
		ns := &st.Nodes[i]
		for _, row := range stats {
			if row["svname"] == ns.Name {
				ns.LBStatus, ns.LBActive = row["status"], row.Int("scur")
			}
		}
		for _, ss := range states {
			if ss.Name == ns.Name {
				ns.LBAdmin = ss.AdminState
			}
		}
	}
	return st
}

// Write renders the status as a table for a person. Database paths are
// shown as they are; a server DSN is shown with its password hidden.
func (st Status) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tPID\tHEALTH\tVERSION\tREAD-ONLY\t%s\tIN FLIGHT\tDATABASE\n", strings.ToUpper(st.LB))
	for _, n := range st.Nodes {
		pid := "stopped"
		if n.Pid != 0 {
			pid = fmt.Sprint(n.Pid)
		}
		lb := n.LBStatus
		switch {
		case lb == "":
			lb = "?"
		case n.LBAdmin&(runtimeapi.AdminForcedMaint|runtimeapi.AdminConfigMaint) != 0 && !strings.Contains(lb, "MAINT"):
			lb += " (maint)"
		case n.LBAdmin&runtimeapi.AdminForcedDrain != 0 && !strings.Contains(lb, "DRAIN"):
			lb += " (drain)"
		}
		version := n.Version
		if version == "" {
			version = "-"
		}
		name := n.Name
		if n.Processing {
			name += " (processing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%d\t%s\n", name, pid, n.Health, version, n.ReadOnly, lb, n.LBActive, RedactDSN(n.DSN))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case st.LBPid == 0:
		_, err := fmt.Fprintf(w, "%s: not running\n", st.LB)
		return err
	case st.LBErr != "":
		_, err := fmt.Fprintf(w, "%s: pid %d, %s\n", st.LB, st.LBPid, st.LBErr)
		return err
	}
	_, err := fmt.Fprintf(w, "%s: pid %d\n", st.LB, st.LBPid)
	return err
}
