package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/fsutil"
	"github.com/upshift-dev/upshift/schema"
)

// RecordFile is the file, under state_dir, where record appends one line
// per execution: "<key> <n>", n counting that key's executions from 1.
const RecordFile = "record.log"

// kit is one configured testkit instance.
type kit struct {
	// exit ends the process for crash; tests replace os.Exit.
	exit func(code int)

	mu       sync.Mutex
	stateDir string
	nodes    map[string]*node
	order    []string
}

type node struct {
	attrs    map[string]cty.Value
	running  bool
	readOnly bool
	config   map[string]string
}

func newKit(exit func(int)) *kit { return &kit{exit: exit, nodes: map[string]*node{}} }

func req(name string, ty cty.Type, desc string) *schema.Attribute {
	return &schema.Attribute{Name: name, Type: ty, Required: true, Description: desc}
}

func opt(name string, ty cty.Type, desc string) *schema.Attribute {
	return &schema.Attribute{Name: name, Type: ty, Description: desc}
}

func obj(attrs ...*schema.Attribute) *schema.Object { return &schema.Object{Attributes: attrs} }

// The testkit's own actions.
var (
	noopAction = &schema.Action{
		Name: "noop", Description: "Returns at once.", Idempotent: true,
		Args: obj(), Result: obj(req("ok", cty.Bool, "Always true.")),
	}
	sleepAction = &schema.Action{
		Name: "sleep", Description: "Sleeps for a duration, or until cancelled. With key, a cancelled sleep leaves the file cancelled-<key> in state_dir.", Idempotent: true,
		Args:   obj(req("duration", cty.String, "How long, e.g. \"2s\"."), opt("key", cty.String, "Names the cancellation marker.")),
		Result: obj(req("slept", cty.String, "The duration slept.")),
	}
	flakyAction = &schema.Action{
		Name: "flaky", Description: "Fails the first `failures` calls for a key, then succeeds. The count is kept in state_dir.", Idempotent: true,
		Args:   obj(req("key", cty.String, "Counter name."), req("failures", cty.Number, "How many calls fail before one succeeds.")),
		Result: obj(req("attempts", cty.Number, "Calls made for this key so far, this one included.")),
	}
	failAction = &schema.Action{
		Name: "fail", Description: "Always fails with message; with attribute, the error blames that argument.", Idempotent: true,
		Args:   obj(req("message", cty.String, "The error message."), opt("attribute", cty.String, "Argument to blame.")),
		Result: obj(),
	}
	crashAction = &schema.Action{
		Name: "crash", Description: "Ends the plugin process with exit status 2 in the middle of the call.", Idempotent: true,
		Args:   obj(opt("after", cty.String, "Wait this long first. Default 0.")),
		Result: obj(),
	}
	recordAction = &schema.Action{
		Name: "record", Description: "Appends \"<key> <n>\" to state_dir/record.log; not idempotent. Its check reports applied once the key is recorded.",
		Args:   obj(req("key", cty.String, "What to record.")),
		Result: obj(req("key", cty.String, "The key."), req("count", cty.Number, "Times the key has been recorded.")),
	}
	echoAction = &schema.Action{
		Name: "echo", Description: "Returns its arguments.", Idempotent: true,
		Args: obj(req("value", cty.String, "Returned as value."),
			&schema.Attribute{Name: "secret", Type: cty.String, Sensitive: true, Description: "Returned as secret."}),
		Result: obj(req("value", cty.String, "The value."),
			&schema.Attribute{Name: "secret", Type: cty.String, Sensitive: true, Description: "The secret, null when not given."}),
	}
)

func (k *kit) plugin() *sdk.Plugin {
	std := func(name string) *schema.Action { return schema.ContractAction(schema.KindNodePool, name) }
	return &sdk.Plugin{
		Name:    "testkit",
		Version: version,
		Kind:    schema.KindNodePool,
		Config: obj(
			opt("state_dir", cty.String, "Folder for files that must survive a plugin restart (flaky counters, record log, markers)."),
		),
		Configure: k.configure,
		Actions: []*sdk.Action{
			{Schema: std("start"), Run: k.start},
			{Schema: std("stop"), Run: k.stop},
			{Schema: std("exec"), Run: k.execute},
			{Schema: std("set_config"), Run: k.setConfig},
			{Schema: std("restore_config"), Run: k.restoreConfig},
			{Schema: std("touch"), Run: k.touch},
			{Schema: std("remove"), Run: k.remove},
			{Schema: std("read_only"), Run: k.readOnly},
			{Schema: std("read_write"), Run: k.readWrite},
			{Schema: std("preflight"), Run: k.preflight},
			{Schema: std("verify"), Run: k.verify},
			{Schema: std("wait_healthy"), Run: k.waitHealthy},
			{Schema: std("backup_data"), Run: k.backupData},
			{Schema: std("purge_generated"), Run: k.purgeGenerated},
			{Schema: noopAction, Run: k.noop},
			{Schema: sleepAction, Run: k.sleep},
			{Schema: flakyAction, Run: k.flaky},
			{Schema: failAction, Run: k.fail},
			{Schema: crashAction, Run: k.crash},
			{Schema: recordAction, Run: k.record, Check: k.checkRecord},
			{Schema: echoAction, Run: k.echo},
		},
	}
}

func (k *kit) configure(_ context.Context, req plugins.ConfigureRequest) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var c struct {
		StateDir string `cty:"state_dir"`
	}
	if err := sdk.Decode(req.Config, &c); err != nil {
		return err
	}
	if c.StateDir != "" {
		k.stateDir = c.StateDir
		if err := os.MkdirAll(k.stateDir, 0o755); err != nil {
			return sdk.ArgError("state_dir", "%s", err)
		}
	}
	k.nodes = map[string]*node{}
	k.order = nil
	for it := req.Nodes.ElementIterator(); it.Next(); {
		_, v := it.Element()
		name := v.GetAttr("name").AsString()
		if k.nodes[name] != nil {
			return sdk.ArgError("nodes", "node %q appears twice", name)
		}
		k.nodes[name] = &node{attrs: v.AsValueMap(), config: map[string]string{}}
		k.order = append(k.order, name)
	}
	return nil
}

// node returns the named node; the caller holds k.mu.
func (k *kit) node(r *sdk.Request) (string, *node, error) {
	name := r.String("node")
	n := k.nodes[name]
	if n == nil {
		known := append([]string(nil), k.order...)
		sort.Strings(known)
		return "", nil, sdk.ArgError("node", "no node %q in the pool (nodes: %s)", name, strings.Join(known, ", "))
	}
	return name, n, nil
}

func (k *kit) dir(action string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stateDir == "" {
		return "", fmt.Errorf("%s needs state_dir in the plugin's config", action)
	}
	return k.stateDir, nil
}

func result(a *schema.Action, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(a, attrs)
}

func (k *kit) start(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	if n.running {
		r.Progress("%s is already running", name)
	}
	n.running = true
	return result(schema.ContractAction(schema.KindNodePool, "start"), map[string]cty.Value{"node": cty.StringVal(name)})
}

func (k *kit) stop(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	n.running = false
	return result(schema.ContractAction(schema.KindNodePool, "stop"), map[string]cty.Value{"node": cty.StringVal(name)})
}

// execute runs nothing: it checks the arguments as a real node pool would
// and reports the argument vector (or shell line) as stdout.
func (k *kit) execute(_ context.Context, r *sdk.Request) (cty.Value, error) {
	var args struct {
		Command []string `cty:"command"`
		Shell   string   `cty:"shell"`
	}
	if err := r.Decode(&args); err != nil {
		return cty.NilVal, err
	}
	if (len(args.Command) == 0) == (args.Shell == "") {
		return cty.NilVal, sdk.ArgError("command", "give exactly one of command and shell")
	}
	if _, err := r.Duration("timeout", 10*time.Minute); err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	_, _, err := k.node(r)
	k.mu.Unlock()
	if err != nil {
		return cty.NilVal, err
	}
	out := args.Shell
	if out == "" {
		out = strings.Join(args.Command, " ")
	}
	return result(schema.ContractAction(schema.KindNodePool, "exec"), map[string]cty.Value{
		"exit_code": cty.NumberIntVal(0), "stdout": cty.StringVal(out + "\n"), "stderr": cty.StringVal(""),
	})
}

func (k *kit) setConfig(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	key, value := r.String("key"), r.String("value")
	old, had := n.config[key]
	n.config[key] = value
	prev := cty.NullVal(cty.String)
	if had {
		prev = cty.StringVal(old)
	}
	return result(schema.ContractAction(schema.KindNodePool, "set_config"), map[string]cty.Value{"changed": cty.BoolVal(!had || old != value), "existed": cty.BoolVal(had), "previous": prev})
}

func (k *kit) touch(_ context.Context, r *sdk.Request) (cty.Value, error) {
	dir, err := k.dir("touch")
	if err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	name, _, err := k.node(r)
	k.mu.Unlock()
	if err != nil {
		return cty.NilVal, err
	}
	rel := r.String("path")
	if rel == "" || filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return cty.NilVal, sdk.ArgError("path", "%q must be a relative path inside the node's data folder", rel)
	}
	p := filepath.Join(dir, "nodes", name, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return cty.NilVal, err
	}
	_, statErr := os.Lstat(p)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return cty.NilVal, err
	}
	if err := f.Close(); err != nil {
		return cty.NilVal, err
	}
	return result(schema.ContractAction(schema.KindNodePool, "touch"), map[string]cty.Value{"path": cty.StringVal(p), "created": cty.BoolVal(os.IsNotExist(statErr))})
}

func (k *kit) readOnly(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	n.readOnly = r.Bool("enabled", false)
	return result(schema.ContractAction(schema.KindNodePool, "read_only"), map[string]cty.Value{
		"node": cty.StringVal(name), "enabled": cty.BoolVal(n.readOnly),
	})
}

// waitHealthy reports healthy at once; the version is the node's own
// "version" attribute when the playbook gives one. A required version it
// does not have, or writable while read_only is on, fails at once.
func (k *kit) waitHealthy(_ context.Context, r *sdk.Request) (cty.Value, error) {
	if _, err := r.Duration("timeout", 2*time.Minute); err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	name, n, err := k.node(r)
	if err != nil {
		return cty.NilVal, err
	}
	ver := version
	if v, ok := n.attrs["version"]; ok && !v.IsNull() && v.IsKnown() && v.Type() == cty.String {
		ver = v.AsString()
	}
	if want := r.String("version"); want != "" && want != ver {
		return cty.NilVal, fmt.Errorf("node %s reports version %s, not %s", name, ver, want)
	}
	if r.Bool("writable", false) && n.readOnly {
		return cty.NilVal, fmt.Errorf("node %s is read-only", name)
	}
	return result(schema.ContractAction(schema.KindNodePool, "wait_healthy"), map[string]cty.Value{
		"node": cty.StringVal(name), "version": cty.StringVal(ver),
	})
}

func (k *kit) backupData(_ context.Context, r *sdk.Request) (cty.Value, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, _, err := k.node(r); err != nil {
		return cty.NilVal, err
	}
	return result(schema.ContractAction(schema.KindNodePool, "backup_data"), map[string]cty.Value{
		"path": cty.StringVal(r.String("to")), "bytes": cty.NumberIntVal(0),
	})
}

func (k *kit) noop(context.Context, *sdk.Request) (cty.Value, error) {
	return cty.ObjectVal(map[string]cty.Value{"ok": cty.True}), nil
}

func (k *kit) sleep(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	d, err := r.Duration("duration", 0)
	if err != nil {
		return cty.NilVal, err
	}
	r.Progress("sleeping %s", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return result(sleepAction, map[string]cty.Value{"slept": cty.StringVal(d.String())})
	case <-ctx.Done():
		if key := r.String("key"); key != "" {
			if err := checkKey(key); err != nil {
				return cty.NilVal, err
			}
			if dir, err := k.dir("sleep"); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "cancelled-"+key), []byte(ctx.Err().Error()+"\n"), 0o644)
			}
		}
		return cty.NilVal, fmt.Errorf("sleep cancelled: %w", ctx.Err())
	}
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// checkKey keeps keys usable as file names under state_dir.
func checkKey(key string) error {
	if !keyPattern.MatchString(key) || key == "." || key == ".." {
		return sdk.ArgError("key", "%q: use letters, digits, '.', '_' and '-' only", key)
	}
	return nil
}

func (k *kit) flaky(_ context.Context, r *sdk.Request) (cty.Value, error) {
	key := r.String("key")
	if err := checkKey(key); err != nil {
		return cty.NilVal, err
	}
	dir, err := k.dir("flaky")
	if err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p := filepath.Join(dir, "flaky-"+key+".count")
	n := 0
	if b, err := os.ReadFile(p); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	} else if !errors.Is(err, os.ErrNotExist) {
		return cty.NilVal, err
	}
	n++
	if err := fsutil.WriteFile(p, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return cty.NilVal, err
	}
	if failures := r.Int("failures", 0); n <= failures {
		return cty.NilVal, fmt.Errorf("flaky %s: failing on purpose (call %d, %d to fail)", key, n, failures)
	}
	return result(flakyAction, map[string]cty.Value{"attempts": cty.NumberIntVal(int64(n))})
}

func (k *kit) fail(_ context.Context, r *sdk.Request) (cty.Value, error) {
	if attr := r.String("attribute"); attr != "" {
		return cty.NilVal, sdk.ArgError(attr, "%s", r.String("message"))
	}
	return cty.NilVal, errors.New(r.String("message"))
}

func (k *kit) crash(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	d, err := r.Duration("after", 0)
	if err != nil {
		return cty.NilVal, err
	}
	r.Progress("crashing in %s", d)
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return cty.NilVal, ctx.Err()
	}
	k.exit(2)
	return cty.NilVal, errors.New("crash: the process should have exited")
}

// recordCount counts the lines for key in the record log; the caller holds
// k.mu.
func recordCount(path, key string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, _, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			n++
		}
	}
	return n, sc.Err()
}

func (k *kit) recordPath(r *sdk.Request) (string, string, error) {
	key := r.String("key")
	if err := checkKey(key); err != nil {
		return "", "", err
	}
	dir, err := k.dir("record")
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, RecordFile), key, nil
}

func (k *kit) record(_ context.Context, r *sdk.Request) (cty.Value, error) {
	p, key, err := k.recordPath(r)
	if err != nil {
		return cty.NilVal, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	n, err := recordCount(p, key)
	if err != nil {
		return cty.NilVal, err
	}
	n++
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return cty.NilVal, err
	}
	_, werr := fmt.Fprintf(f, "%s %d\n", key, n)
	// Sync: the runner's crash test kills processes right after a step.
	serr := f.Sync()
	if cerr := f.Close(); werr == nil {
		werr = errors.Join(serr, cerr)
	}
	if werr != nil {
		return cty.NilVal, werr
	}
	r.Logger.Info("recorded", "key", key, "count", n)
	return result(recordAction, map[string]cty.Value{"key": cty.StringVal(key), "count": cty.NumberIntVal(int64(n))})
}

func (k *kit) checkRecord(_ context.Context, r *sdk.Request) (plugins.CheckResponse, error) {
	p, key, err := k.recordPath(r)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	n, err := recordCount(p, key)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	if n == 0 {
		return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: fmt.Sprintf("%s is not recorded", key)}, nil
	}
	res, err := result(recordAction, map[string]cty.Value{"key": cty.StringVal(key), "count": cty.NumberIntVal(int64(n))})
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	return plugins.CheckResponse{State: plugins.CheckApplied, Detail: fmt.Sprintf("%s is recorded %d time(s)", key, n), Result: res}, nil
}

func (k *kit) echo(_ context.Context, r *sdk.Request) (cty.Value, error) {
	return result(echoAction, map[string]cty.Value{
		"value": r.Args.GetAttr("value"), "secret": r.Args.GetAttr("secret"),
	})
}
