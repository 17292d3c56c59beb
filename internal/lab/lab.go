// Package lab owns the local demo lab: three platformd nodes (version 1,
// node-1 processing) on loopback ports sharing one database (SQLite by
// default, or a PostgreSQL or MariaDB server of the lab's own), a
// real HAProxy (or nginx) in front of them, and the variables file that
// points the shipped rolling-upgrade playbook at them. Everything runs
// detached, so the lab outlives `upshift lab up`; lab.json records what was
// started (ports, pids, paths), and Inspect shows how it stands.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/servers/haproxyd"
	"github.com/upshift-dev/upshift/internal/servers/nginxd"
	"github.com/upshift-dev/upshift/internal/servers/sshd"
	"github.com/upshift-dev/upshift/plugins/haproxy/runtimeapi"
	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

// Backend is the HAProxy backend holding the nodes.
const Backend = "platform"

// NodeCount is how many nodes the lab runs.
const NodeCount = 3

// State is what a lab is made of, saved in <dir>/lab.json.
type State struct {
	Dir      string `json:"dir"`
	Bin      string `json:"bin"`
	Frontend string `json:"frontend"` // HAProxy's host:port
	LB       string `json:"lb"`       // haproxy or nginx
	HAProxy  string `json:"haproxy"`  // HAProxy's folder
	Nginx    string `json:"nginx"`    // nginx's folder
	// LBPid is the load balancer's master pid when the lab was started
	// (its pid file is authoritative).
	LBPid int `json:"lb_pid,omitempty"`
	// NodePlugin is process or ssh; SSHD and SSHAddr locate the lab's sshd.
	NodePlugin string `json:"node_plugin,omitempty"`
	// Affinity is whether the load balancer keeps a client on one node.
	Affinity bool        `json:"affinity,omitempty"`
	SSHD     string      `json:"sshd,omitempty"`
	SSHAddr  string      `json:"ssh_addr,omitempty"`
	DB       DB          `json:"db"`
	Nodes    []NodeState `json:"nodes"`
}

// NodeState is one node of the lab.
type NodeState struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	Processing bool   `json:"processing"`
	ConfigFile string `json:"config_file"`
	DataDir    string `json:"data_dir"`
	PidFile    string `json:"pid_file"`
	LogFile    string `json:"log_file"`
	// AdminAddress is the node's admin API (loopback, a port of its own:
	// HAProxy forwards only Address); AdminTokenFile holds its token
	// (0600), read by platformd and by the node plugin.
	AdminAddress   string `json:"admin_address,omitempty"`
	AdminTokenFile string `json:"admin_token_file,omitempty"`
	// Pid is the pid the lab started; the playbook restarts nodes, so the
	// pid file is authoritative.
	Pid int `json:"pid,omitempty"`
}

// Node returns the localnode view of n, which starts and stops it.
func (s *State) Node(n NodeState) *localnode.Node {
	nn := nodekit.Node{
		Name: n.Name, Address: n.Address, ConfigFile: n.ConfigFile, DataDir: n.DataDir,
		Command: []string{filepath.Join(s.Bin, "platformd"), "serve", "--config", n.ConfigFile},
		PidFile: n.PidFile, LogFile: n.LogFile,
		HealthURL: "http://" + n.Address + "/healthz", ReadOnlyURL: n.ReadOnlyURL(),
		AdminTokenFile: n.AdminTokenFile,
	}
	if n.AdminAddress == "" { // a lab from before the admin listener
		nn.AdminSocket = filepath.Join(n.DataDir, nodekit.AdminSocketFile)
	}
	return &localnode.Node{Node: nn}
}

// ReadOnlyURL is the node's read-only endpoint, on its admin listener.
func (n NodeState) ReadOnlyURL() string {
	if n.AdminAddress == "" {
		return "http://" + n.Address + "/admin/read-only"
	}
	return "http://" + n.AdminAddress + "/admin/read-only"
}

// VarsFile is the path of the playbook variables the lab writes.
func (s *State) VarsFile() string { return filepath.Join(s.Dir, "cluster.vars.hcl") }

// URL is the lab's front door: HAProxy.
func (s *State) URL() string { return "http://" + s.Frontend }

// HAProxyCtl returns the running HAProxy's files and controls.
func (s *State) HAProxyCtl() *haproxyd.Detached {
	d := haproxyd.DetachedAt(s.HAProxy)
	d.Addr, d.Backend = s.Frontend, Backend
	return d
}

// Load reads <dir>/lab.json; a missing file is fs.ErrNotExist.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "lab.json"), err)
	}
	return &s, nil
}

func (s *State) save() error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return writePrivate(filepath.Join(s.Dir, "lab.json"), append(b, '\n'))
}

// newToken is a random admin token: 32 bytes, hex.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writePrivate replaces path with a file only its owner may read (made
// 0600 before it holds anything, even where an older lab left it 0644):
// lab.json, the nodes' configs and the variables file hold the database's
// password.
func writePrivate(path string, data []byte) error {
	return fsutil.WriteFileMode(path, data, 0o600)
}

// NginxCtl returns the lab's nginx files and controls.
func (s *State) NginxCtl() *nginxd.Nginx {
	return &nginxd.Nginx{Dir: s.Nginx, Conf: filepath.Join(s.Nginx, "nginx.conf"), Upstream: filepath.Join(s.Nginx, "upstream.conf"),
		PidFile: filepath.Join(s.Nginx, "nginx.pid"), Addr: s.Frontend, Name: Backend,
		ErrorLog: filepath.Join(s.Nginx, "error.log"), AccessLog: filepath.Join(s.Nginx, "access.log")}
}

// lbRunning reports whether the lab's load balancer runs.
func (s *State) lbRunning() bool {
	if s.LB == "nginx" {
		return s.NginxCtl().Running()
	}
	return s.HAProxyCtl().Running()
}

// Running reports whether anything of the lab is running.
func (s *State) Running() bool {
	if s.HAProxyCtl().Running() || s.NginxCtl().Running() || s.DB.serverUp() {
		return true
	}
	for _, n := range s.Nodes {
		if s.Node(n).Running() {
			return true
		}
	}
	return false
}

// Up starts a lab in dir with the binaries in bin (platformd). A lab that
// is already running is left as it is and returned.
func Up(ctx context.Context, dir, bin string, log io.Writer) (*State, error) {
	return UpWith(ctx, Options{Dir: dir, Bin: bin}, log)
}

// Options choose what a lab is made of.
type Options struct {
	Dir, Bin string
	// Database is sqlite (default), postgres or mysql: a server of the
	// lab's own in its folder (or the one UPSHIFT_LAB_POSTGRES /
	// UPSHIFT_LAB_MYSQL names), with databases of unique names.
	Database string
	// LoadBalancer is haproxy (default) or nginx.
	LoadBalancer string
	// NodePlugin is process (default) or ssh: with ssh the lab runs an
	// sshd on loopback and the playbook reaches the nodes through it.
	NodePlugin string
	// NoAffinity runs the load balancer without session affinity (round
	// robin): a client then moves between old and upgraded nodes while
	// both serve, which the traffic check counts as read-your-writes
	// misses.
	NoAffinity bool
}

// Session affinity in the lab: HAProxy inserts its own cookie; nginx open
// source hashes on the session cookie platformd sets.
const (
	HAProxyCookie = "upshift_srv"
	// SessionCookie is platformd's session cookie (platform.SessionCookie,
	// not imported: it would link the platform's database drivers into
	// upshift).
	SessionCookie = "platform_session"
	NginxBalance  = "hash $cookie_" + SessionCookie + " consistent"
	// DrainTimeout is the lab's drain timeout: with affinity, a drain
	// lasts until it (the traffic's clients keep their sessions), then
	// redispatches them.
	DrainTimeout = "3s"
)

// UpWith is Up with the database chosen.
func UpWith(ctx context.Context, o Options, log io.Writer) (*State, error) {
	dir, bin := o.Dir, o.Bin
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if s, err := Load(dir); err == nil && s.Running() {
		if missing := s.notRunning(); len(missing) > 0 {
			return nil, fmt.Errorf("the lab in %s is partly up (%s not running); `upshift lab down --dir %s` stops the rest, then try again", dir, strings.Join(missing, ", "), dir)
		}
		fmt.Fprintf(log, "The lab in %s is already up; `upshift lab down --dir %s` stops it.\n", dir, dir)
		return s, nil
	}
	if _, err := os.Stat(filepath.Join(bin, "platformd")); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build`)", filepath.Join(bin, "platformd"), err)
	}
	s := &State{Dir: dir, Bin: bin, LB: o.LoadBalancer, HAProxy: filepath.Join(dir, "haproxy"), Nginx: filepath.Join(dir, "nginx"), NodePlugin: o.NodePlugin, Affinity: !o.NoAffinity}
	if err := s.start(ctx, o, log); err != nil {
		// Whatever started before the failure is stopped, the database
		// server too: nothing is left running that lab.json may not name.
		_ = Down(s, io.Discard)
		return nil, err
	}
	return s, nil
}

// start brings up the lab's parts in order: sshd, database, nodes, load
// balancer, then writes the playbook's variables.
func (s *State) start(ctx context.Context, o Options, log io.Writer) error {
	var err error
	switch s.NodePlugin {
	case "":
		s.NodePlugin = "process"
	case "process":
	case "ssh":
		s.SSHD = filepath.Join(s.Dir, "sshd")
		srv, err := sshd.StartDetached(s.SSHD)
		if err != nil {
			return err
		}
		s.SSHAddr = srv.Addr
		fmt.Fprintf(log, "  sshd       %s  (nodes are reached through it)\n", srv.Addr)
	default:
		return fmt.Errorf("unknown node plugin %q: process or ssh", s.NodePlugin)
	}
	switch s.LB {
	case "":
		s.LB = "haproxy"
	case "haproxy", "nginx":
	default:
		return fmt.Errorf("unknown load balancer %q: haproxy or nginx", s.LB)
	}
	for _, d := range []string{filepath.Join(s.Dir, "db"), filepath.Join(s.Dir, "backups"), s.HAProxy} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if s.DB, err = newDB(ctx, o.Database, s.Dir); err != nil {
		return err
	}
	if s.DB.Server != "" {
		fmt.Fprintf(log, "  %-10s %s  (the lab's own server, in %s)\n", s.DB.Engine, RedactDSN(s.DB.Admin), s.DB.Server)
	}
	addrs, adminAddrs := make([]string, NodeCount), make([]string, NodeCount)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
		if adminAddrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	for i := 0; i < NodeCount; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		nd := filepath.Join(s.Dir, name)
		n := NodeState{Name: name, Address: addrs[i], Processing: i == 0, ConfigFile: filepath.Join(nd, "config.json"),
			DataDir: filepath.Join(nd, "data"), PidFile: filepath.Join(nd, "platformd.pid"), LogFile: filepath.Join(nd, "platformd.log"),
			AdminAddress: adminAddrs[i], AdminTokenFile: filepath.Join(nd, "admin.token")}
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, "http://"+a)
			}
		}
		cfg := map[string]any{"name": name, "listen": n.Address, "version": "1", "processing": n.Processing,
			"data_dir": n.DataDir, "db.driver": s.DB.Driver(), "db.dsn": s.DB.DSN, "peers": peers,
			"admin_listen": n.AdminAddress, "admin_token_file": n.AdminTokenFile}
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			return err
		}
		if err := writePrivate(n.AdminTokenFile, []byte(newToken()+"\n")); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := writePrivate(n.ConfigFile, append(b, '\n')); err != nil {
			return err
		}
		s.Nodes = append(s.Nodes, n)
	}
	if err := s.save(); err != nil {
		return err
	}
	quiet := func(string, ...any) {}
	// One at a time: the first node creates the database.
	for i, n := range s.Nodes {
		ln := s.Node(n)
		if _, err := ln.Start(ctx, 20*time.Second, quiet); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		if _, err := ln.WaitHealthy(ctx, 20*time.Second, 1, quiet); err != nil {
			return fmt.Errorf("%s: %w (log: %s)", n.Name, err, n.LogFile)
		}
		s.Nodes[i].Pid = ln.Pid()
		// A node renders its generated files on first use, as in
		// production: the lab has it do so on version 1, so that an
		// upgrade that does not purge them is seen (FinalChecks).
		if err := warmGenerated(ctx, n.Address); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		fmt.Fprintf(log, "  %s  version 1  http://%s%s\n", n.Name, n.Address, map[bool]string{true: "  (processing)"}[n.Processing])
	}
	if s.LB == "nginx" {
		var servers []nginxctl.Server
		for _, n := range s.Nodes {
			servers = append(servers, nginxctl.Server{Name: n.Name, Addr: n.Address})
		}
		if s.Frontend, err = freeAddr(); err != nil {
			return err
		}
		cfg := nginxd.Config{Dir: s.Nginx, Bind: s.Frontend, Upstream: Backend, Servers: servers}
		if s.Affinity {
			cfg.Balance = NginxBalance
		}
		ng, err := nginxd.StartWith(ctx, cfg)
		if err != nil {
			return err
		}
		s.LBPid = nginxctl.MasterPID(ng.PidFile)
		if err := s.save(); err != nil {
			return err
		}
		fmt.Fprintf(log, "  nginx      %s  (upstream file %s)\n", s.URL(), ng.Upstream)
	} else {
		var servers []haproxyd.Server
		for _, n := range s.Nodes {
			servers = append(servers, haproxyd.Server{Name: n.Name, Addr: n.Address})
		}
		cfg := haproxyd.Config{Servers: servers, Backend: Backend, Dir: s.HAProxy}
		if s.Affinity {
			cfg.Cookie = HAProxyCookie
		}
		hp, err := haproxyd.StartDetached(ctx, cfg)
		if err != nil {
			return err
		}
		s.Frontend, s.LBPid = hp.Addr, hp.MasterPID()
		if err := s.save(); err != nil {
			return err
		}
		if err := s.waitAllUp(ctx, 20*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(log, "  haproxy    %s  (admin socket %s)\n", s.URL(), hp.Socket)
	}
	if err := s.writeVars(); err != nil {
		return err
	}
	fmt.Fprintf(log, "  variables  %s\n", s.VarsFile())
	return nil
}

// waitAllUp waits until HAProxy's health checks report every node UP.
func (s *State) waitAllUp(ctx context.Context, limit time.Duration) error {
	c := runtimeapi.NewClient(s.HAProxyCtl().Socket, 2*time.Second)
	deadline := time.Now().Add(limit)
	for {
		stats, _, err := c.Servers(ctx, Backend)
		up := 0
		if err == nil {
			for _, st := range stats {
				if st["status"] == "UP" {
					up++
				}
			}
			if up == len(s.Nodes) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HAProxy reports %d of %d nodes up after %s (%v)", up, len(s.Nodes), limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeVars writes the shipped playbook's variables for this lab.
func (s *State) writeVars() error {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	str := cty.StringVal
	list := func(xs ...string) cty.Value {
		vals := make([]cty.Value, len(xs))
		for i, x := range xs {
			vals[i] = str(x)
		}
		return cty.ListVal(vals)
	}
	var nodes []cty.Value
	for _, n := range s.Nodes {
		platformd := filepath.Join(s.Bin, "platformd")
		host := str(s.SSHAddr)
		if s.SSHAddr == "" {
			host = cty.NullVal(cty.String)
		}
		nodes = append(nodes, cty.ObjectVal(map[string]cty.Value{
			"host": host,
			"name": str(n.Name), "processing": cty.BoolVal(n.Processing), "address": str(n.Address),
			"config_file": str(n.ConfigFile), "data_dir": str(n.DataDir),
			"command":  list(platformd, "serve", "--config", n.ConfigFile),
			"pid_file": str(n.PidFile), "log_file": str(n.LogFile),
			"health_url":       str("http://" + n.Address + "/healthz"),
			"read_only_url":    str(n.ReadOnlyURL()),
			"admin_token_file": str(n.AdminTokenFile),
			"migrate_command":  list(platformd, "migrate", "--config", n.ConfigFile),
		}))
	}
	body.AppendUnstructuredTokens(hclwrite.TokensForIdentifier("# Written by `upshift lab up`: the shipped playbook's variables for this lab.\n"))
	body.SetAttributeValue("target_version", str("2"))
	body.SetAttributeValue("database_b", str(s.DB.B))
	body.SetAttributeValue("backup_dir", str(filepath.Join(s.Dir, "backups")))
	body.SetAttributeValue("drain_timeout", str(DrainTimeout))
	lbConfig := cty.ObjectVal(map[string]cty.Value{"socket": str(s.HAProxyCtl().Socket), "backend": str(Backend), "state_file": str(s.HAProxyCtl().StateFile)})
	if s.LB == "nginx" {
		health := map[string]cty.Value{}
		for _, n := range s.Nodes {
			health[n.Name] = str("http://" + n.Address + "/healthz")
		}
		ng := s.NginxCtl()
		lbConfig = cty.ObjectVal(map[string]cty.Value{"nginx_conf": str(ng.Conf), "upstream_file": str(ng.Upstream), "upstream": str(Backend),
			"pid_file": str(ng.PidFile), "health_urls": cty.ObjectVal(health)})
	}
	body.SetAttributeValue("load_balancer", cty.ObjectVal(map[string]cty.Value{"plugin": str(s.LB), "config": lbConfig}))
	dbConfig := map[string]cty.Value{}
	for k, v := range s.DB.PluginConfig() {
		dbConfig[k] = str(v)
	}
	body.SetAttributeValue("database", cty.ObjectVal(map[string]cty.Value{
		"plugin": str(s.DB.Engine),
		"config": cty.ObjectVal(dbConfig),
	}))
	body.SetAttributeValue("nodes", cty.TupleVal(nodes))
	if s.NodePlugin == "ssh" {
		body.SetAttributeValue("node_plugin", str("ssh"))
		body.SetAttributeValue("node_config", cty.ObjectVal(map[string]cty.Value{
			"known_hosts": str(filepath.Join(s.SSHD, "known_hosts")), "private_key_file": str(filepath.Join(s.SSHD, "client_key")), "user": str("root"),
		}))
	}
	return writePrivate(s.VarsFile(), hclwrite.Format(f.Bytes()))
}

// warmGenerated asks a node's GET /manifest, which it renders into its
// generated folder.
func warmGenerated(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/manifest", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("rendering its generated manifest: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rendering its generated manifest: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Purge deletes the lab's files and its databases on a server. The lab must
// be down.
func Purge(s *State) error {
	if err := s.DB.drop(context.Background()); err != nil {
		return err
	}
	if err := removeStateDB(s.Dir); err != nil {
		return err
	}
	if srv := s.DB.server(); srv != nil {
		if err := srv.Remove(); err != nil {
			return err
		}
	}
	return os.RemoveAll(s.Dir)
}

// Down stops every process of the lab and waits until they are gone. The
// lab's files stay, for inspection.
func Down(s *State, log io.Writer) error {
	var errs []error
	for _, n := range s.Nodes {
		if _, err := s.Node(n).Stop(context.Background(), 10*time.Second, func(string, ...any) {}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
		} else {
			fmt.Fprintf(log, "  %s stopped\n", n.Name)
		}
	}
	if s.LB == "nginx" {
		if err := s.NginxCtl().Stop(); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintln(log, "  nginx stopped")
		}
	} else if err := s.HAProxyCtl().Stop(); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintln(log, "  haproxy stopped")
	}
	if s.SSHD != "" {
		if err := sshd.Stop(s.SSHD); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintln(log, "  sshd stopped")
		}
	}
	// upshift's own state server (lab demo --state postgres), if any.
	if ran, err := stopStateDB(s.Dir); err != nil {
		errs = append(errs, err)
	} else if ran {
		fmt.Fprintln(log, "  state server stopped")
	}
	// The database last: the nodes were its clients.
	if srv := s.DB.server(); srv != nil {
		if err := srv.Stop(); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(log, "  %s server stopped\n", s.DB.Engine)
		}
	}
	// Check what was recorded too: a pid file removed by hand must not
	// leave a process behind unnoticed.
	for _, pid := range s.recordedPids() {
		if pid > 0 && procfs.Alive(pid) && strings.Contains(cmdline(pid), s.Dir) {
			errs = append(errs, fmt.Errorf("pid %d (%s) is still running", pid, cmdline(pid)))
		}
	}
	return errors.Join(errs...)
}

// notRunning names the parts of the lab whose process is gone.
func (s *State) notRunning() []string {
	var out []string
	for _, n := range s.Nodes {
		if !s.Node(n).Running() {
			out = append(out, n.Name)
		}
	}
	if !s.lbRunning() {
		out = append(out, s.LB)
	}
	if srv := s.DB.server(); srv != nil && !srv.Running() {
		out = append(out, s.DB.Engine+" server")
	}
	return out
}

// recordedPids are the pids in lab.json.
func (s *State) recordedPids() []int {
	out := []int{s.LBPid}
	for _, n := range s.Nodes {
		out = append(out, n.Pid)
	}
	return out
}

// cmdline is a process's command line, spaces between arguments.
func cmdline(pid int) string {
	p, _ := procfs.Read(pid)
	return p.Title()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
