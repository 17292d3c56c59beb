// Package nodekit owns what node_pool plugins share: the Node a playbook's
// nodes list describes (FromValue, Attr, Strings), the node's HTTP admin
// and health endpoints (SetReadOnly, Health, WaitHealthy with a required
// version and writability, WaitStarted: the process a start launched
// answers as itself, not a stray one on its port), and the handler
// scaffolding of the kind's standard actions. A vendor implements Driver
// for its node type (a local process, a host over SSH); Kit wires start,
// stop, exec, set_config, touch, read_only, wait_healthy and backup_data
// to it: the node lookup by the `node` argument, one action at a time per
// node, argument decoding, "node NAME:" on errors and the contract's
// results, and exec's Check (its `check` command, asked on resume).
package nodekit

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Progress receives progress lines (printf style), as sdk.Request.Progress.
type Progress func(format string, args ...any)

// Member is a vendor's node type: it embeds Node (whose Base method it
// then has) and adds what its driver needs.
type Member interface{ Base() *Node }

// Command is exec's command: an argument vector or a shell line (exactly
// one), and extra environment variables. Check is the argument vector
// that says whether the command's effect already happened (exit 0 yes,
// 1 no, else unknown), asked by Check on resume; Exec ignores it.
type Command struct {
	Argv  []string          `cty:"command"`
	Shell string            `cty:"shell"`
	Env   map[string]string `cty:"env"`
	Check []string          `cty:"check"`
}

// ExecResult is what a command printed and how it ended.
type ExecResult struct {
	ExitCode       int
	Stdout, Stderr string
}

// Driver is what a node_pool vendor implements for its node type N. The
// node is locked for the call (never two actions on one node at once);
// errors come back prefixed with "node NAME: ", so a driver does not name
// the node itself. An sdk.ArgError is passed on as it is.
type Driver[N Member] interface {
	// Start starts the node's process and waits until it listens; a node
	// already running is left alone (say so with progress).
	Start(ctx context.Context, n N, timeout time.Duration, progress Progress) error
	// Stop stops it gracefully within timeout, then forcibly.
	Stop(ctx context.Context, n N, timeout time.Duration, progress Progress) error
	// Exec runs cmd on the node's host. A command that ran and exited
	// non-zero returns an error together with its ExitCode and output;
	// an error with ExitCode 0 means it did not run to its end. Whatever
	// the command starts ends with it, and when ctx ends.
	Exec(ctx context.Context, n N, cmd Command, timeout time.Duration) (ExecResult, error)
	// SetConfig sets key in the node's JSON config file, keeping its mode
	// and owner; it reports whether the file changed.
	SetConfig(ctx context.Context, n N, key, value string) (bool, error)
	// Touch creates the file at p (already checked to be in the data folder).
	Touch(ctx context.Context, n N, p string) error
	// BackupData copies the data folder to the absolute path to, and
	// returns the bytes copied.
	BackupData(ctx context.Context, n N, to string) (int64, error)
}

// RunningChecker is implemented by a driver that can tell whether a node
// runs: start and stop then answer Check (applied when the node is
// running, respectively stopped).
type RunningChecker[N Member] interface {
	Running(ctx context.Context, n N) (bool, error)
}

// Kit serves the standard node_pool actions over a Driver and the nodes
// SetNodes gave it.
type Kit[N Member] struct {
	plugin string
	driver Driver[N]

	mu    sync.RWMutex
	nodes map[string]*member[N] // nil until configured
	// StartTimeout and StopTimeout are start's and stop's timeouts when the
	// step gives none; 30s unless the vendor's config says otherwise.
	startTimeout, stopTimeout time.Duration
}

type member[N Member] struct {
	node N
	mu   sync.Mutex // one action at a time: start and stop must not race
}

// New returns a kit for the plugin called plugin (named in errors) over d.
func New[N Member](plugin string, d Driver[N]) *Kit[N] {
	return &Kit[N]{plugin: plugin, driver: d, startTimeout: 30 * time.Second, stopTimeout: 30 * time.Second}
}

// SetNodes replaces the pool's nodes (from Configure), with start's and
// stop's default timeouts (zero keeps 30s). Two nodes of one name are an
// error.
func (k *Kit[N]) SetNodes(nodes []N, startTimeout, stopTimeout time.Duration) error {
	m := make(map[string]*member[N], len(nodes))
	for _, n := range nodes {
		name := n.Base().Name
		if _, dup := m[name]; dup {
			return sdk.ArgError("nodes", "node %q appears twice", name)
		}
		m[name] = &member[N]{node: n}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nodes = m
	if startTimeout > 0 {
		k.startTimeout = startTimeout
	}
	if stopTimeout > 0 {
		k.stopTimeout = stopTimeout
	}
	return nil
}

// Node returns the node called name, if the pool has it.
func (k *Kit[N]) Node(name string) (N, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	m, ok := k.nodes[name]
	if !ok {
		var zero N
		return zero, false
	}
	return m.node, true
}

// find returns the node the `node` argument names: not configured yet is an
// error, an unknown name an ArgError listing the pool's nodes.
func (k *Kit[N]) find(r *sdk.Request) (*member[N], error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.nodes == nil {
		return nil, fmt.Errorf("the %s plugin was not configured", k.plugin)
	}
	name := r.String("node")
	m := k.nodes[name]
	if m == nil {
		names := make([]string, 0, len(k.nodes))
		for n := range k.nodes {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, sdk.ArgError("node", "no node named %q in this pool (nodes: %v)", name, names)
	}
	return m, nil
}

// wrap prefixes a driver's error with the node's name; an ArgError keeps
// its own message, which names the node where it matters.
func wrap(n Member, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := sdk.ArgPath(err); ok {
		return err
	}
	return fmt.Errorf("node %s: %w", n.Base().Name, err)
}

// Result builds the result of r's standard node_pool action.
func Result(r *sdk.Request, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindNodePool, r.Action), attrs)
}

// run is an action body on a found node; locked says whether the node's
// lock is held for it.
type run[N Member] func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error)

func (k *Kit[N]) action(name string, locked bool, f run[N]) *sdk.Action {
	return &sdk.Action{
		Schema: schema.ContractAction(schema.KindNodePool, name),
		Run: func(ctx context.Context, r *sdk.Request) (cty.Value, error) {
			m, err := k.find(r)
			if err != nil {
				return cty.NilVal, err
			}
			if locked {
				m.mu.Lock()
				defer m.mu.Unlock()
			}
			attrs, err := f(ctx, m.node, r)
			if err != nil {
				return cty.NilVal, wrap(m.node, err)
			}
			return Result(r, attrs)
		},
	}
}

// Actions returns the kind's standard actions, served by the driver.
func (k *Kit[N]) Actions() []*sdk.Action {
	d := k.driver
	named := func(n N) map[string]cty.Value { return map[string]cty.Value{"node": cty.StringVal(n.Base().Name)} }
	start := k.action("start", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
		timeout, err := r.Duration("timeout", k.timeouts().start)
		if err != nil {
			return nil, err
		}
		return named(n), d.Start(ctx, n, timeout, r.Progress)
	})
	stop := k.action("stop", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
		timeout, err := r.Duration("timeout", k.timeouts().stop)
		if err != nil {
			return nil, err
		}
		return named(n), d.Stop(ctx, n, timeout, r.Progress)
	})
	if rc, ok := d.(RunningChecker[N]); ok {
		start.Check, stop.Check = k.checkRunning(rc, true), k.checkRunning(rc, false)
	}
	exec := k.action("exec", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
		cmd, timeout, err := execArgs(r)
		if err != nil {
			return nil, err
		}
		res, err := d.Exec(ctx, n, cmd, timeout)
		if err != nil {
			return nil, err
		}
		return execResult(res), nil
	})
	exec.Check = k.checkExec
	return []*sdk.Action{
		start, stop, exec,
		k.action("set_config", true, k.setConfig),
		k.action("restore_config", true, k.restoreConfig),
		k.action("touch", true, k.touch),
		k.action("remove", true, k.remove),
		k.action("read_only", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
			enabled := r.Bool("enabled", true)
			return map[string]cty.Value{"node": cty.StringVal(n.Base().Name), "enabled": cty.BoolVal(enabled)}, k.setReadOnly(ctx, n, enabled, r)
		}),
		k.action("read_write", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
			return map[string]cty.Value{"node": cty.StringVal(n.Base().Name), "enabled": cty.False}, k.setReadOnly(ctx, n, false, r)
		}),
		{Schema: schema.ContractAction(schema.KindNodePool, "preflight"), Run: k.preflight},
		{Schema: schema.ContractAction(schema.KindNodePool, "verify"), Run: k.verify},
		k.purgeAction(),
		// wait_healthy only reads: it does not wait for the node's lock.
		k.action("wait_healthy", false, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
			timeout, err := r.Duration("timeout", 2*time.Minute)
			if err != nil {
				return nil, err
			}
			successes := r.Int("successes", 3)
			if successes < 1 {
				return nil, sdk.ArgError("successes", "must be at least 1")
			}
			healthyFor, err := r.Duration("healthy_for", 0)
			if err != nil {
				return nil, err
			}
			want := Want{Version: r.String("version"), Writable: r.Bool("writable", false), HealthyFor: healthyFor}
			version, err := n.Base().WaitHealthyFor(ctx, timeout, successes, want, r.Progress)
			return map[string]cty.Value{"node": cty.StringVal(n.Base().Name), "version": cty.StringVal(version)}, err
		}),
		k.action("backup_data", true, func(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
			to := r.String("to")
			if !path.IsAbs(to) {
				return nil, sdk.ArgError("to", "node %s: %q must be an absolute path on the node's host", n.Base().Name, to)
			}
			nb, err := d.BackupData(ctx, n, to)
			return map[string]cty.Value{"path": cty.StringVal(to), "bytes": cty.NumberIntVal(nb)}, err
		}),
	}
}

// setReadOnly sets the node's read-only mode. A node that does not answer
// and is stopped, as its driver tells, has nothing to set: it serves
// nothing, and a rolling upgrade that left it stopped (a run cut short
// between its stop and its start) must be able to carry on; what starts
// it later decides its mode. A node that does not answer but runs, or
// whose driver cannot tell, is an error.
func (k *Kit[N]) setReadOnly(ctx context.Context, n N, enabled bool, r *sdk.Request) error {
	err := n.Base().SetReadOnly(ctx, enabled)
	if err == nil {
		return nil
	}
	rc, ok := k.driver.(RunningChecker[N])
	if !ok {
		return err
	}
	if running, rerr := rc.Running(ctx, n); rerr != nil || running {
		return err
	}
	r.Progress("the node is stopped: it serves nothing, so there is no read-only mode to set (%v)", err)
	return nil
}

// execArgs decodes exec's arguments.
func execArgs(r *sdk.Request) (Command, time.Duration, error) {
	var cmd Command
	if err := r.Decode(&cmd); err != nil {
		return cmd, 0, err
	}
	switch {
	case len(cmd.Argv) == 0 && cmd.Shell == "":
		return cmd, 0, sdk.ArgError("command", "%s", ErrNoCommand)
	case len(cmd.Argv) > 0 && cmd.Shell != "":
		return cmd, 0, sdk.ArgError("shell", "%s", ErrBothCommands)
	}
	timeout, err := r.Duration("timeout", 10*time.Minute)
	return cmd, timeout, err
}

func execResult(res ExecResult) map[string]cty.Value {
	return map[string]cty.Value{
		"exit_code": cty.NumberIntVal(int64(res.ExitCode)), "stdout": cty.StringVal(res.Stdout), "stderr": cty.StringVal(res.Stderr),
	}
}

// checkTimeout bounds exec's check command.
const checkTimeout = 2 * time.Minute

// checkExec answers Check for exec by running the step's check command
// (same node, same environment): exit 0 applied (the result is the check's
// output), 1 not applied, anything else, or no check, unknown. It waits
// for the node's lock, as exec does: the check runs a command.
func (k *Kit[N]) checkExec(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	unknown := func(format string, args ...any) (plugins.CheckResponse, error) {
		return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: fmt.Sprintf(format, args...)}, nil
	}
	m, err := k.find(r)
	if err != nil {
		return unknown("%s", err)
	}
	cmd, _, err := execArgs(r)
	if err != nil {
		return unknown("%s", err)
	}
	if len(cmd.Check) == 0 {
		return unknown("the step gives exec no check command to ask")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	res, err := k.driver.Exec(ctx, m.node, Command{Argv: cmd.Check, Env: cmd.Env}, checkTimeout)
	line := strings.Join(cmd.Check, " ")
	switch {
	case err == nil:
		out, err := Result(r, execResult(res))
		return plugins.CheckResponse{State: plugins.CheckApplied, Result: out, Detail: fmt.Sprintf("node %s: check `%s` exited 0: done", m.node.Base().Name, line)}, err
	case res.ExitCode == 1:
		return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: fmt.Sprintf("node %s: check `%s` exited 1: not done", m.node.Base().Name, line)}, nil
	default:
		return unknown("node %s: check `%s`: %s", m.node.Base().Name, line, err)
	}
}

type timeouts struct{ start, stop time.Duration }

func (k *Kit[N]) timeouts() timeouts {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return timeouts{k.startTimeout, k.stopTimeout}
}

// checkRunning answers Check for start (want running) and stop. It does
// not wait for the node's lock: a check only reads.
func (k *Kit[N]) checkRunning(rc RunningChecker[N], want bool) func(context.Context, *sdk.Request) (plugins.CheckResponse, error) {
	return func(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
		m, err := k.find(r)
		if err != nil {
			if _, isArg := sdk.ArgPath(err); isArg {
				return plugins.CheckResponse{State: plugins.CheckUnknown}, nil // Run will say what is wrong
			}
			return plugins.CheckResponse{State: plugins.CheckUnknown}, err
		}
		running, err := rc.Running(ctx, m.node)
		if err != nil {
			return plugins.CheckResponse{State: plugins.CheckUnknown}, wrap(m.node, err)
		}
		if running != want {
			return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
		}
		res, err := Result(r, map[string]cty.Value{"node": cty.StringVal(m.node.Base().Name)})
		return plugins.CheckResponse{State: plugins.CheckApplied, Result: res}, err
	}
}
