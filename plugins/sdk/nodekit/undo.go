package nodekit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins/sdk"
)

// ConfigReader is implemented by a driver that can read one key of a
// node's config file back. set_config then reports the value it replaced,
// which restore_config puts back on rollback, and preflight checks the
// file can be read. Without it, set_config cannot be undone.
type ConfigReader[N Member] interface {
	// ReadConfig returns key's value and whether the key is set.
	ReadConfig(ctx context.Context, n N, key string) (value string, ok bool, err error)
	// RestoreConfig sets key to value when ok, else removes the key,
	// keeping the file's mode and owner; it reports whether the file
	// changed.
	RestoreConfig(ctx context.Context, n N, key, value string, ok bool) (bool, error)
}

// Remover is implemented by a driver that can remove a file touch made
// (the undo of touch); p is checked to be in the data folder. Remove
// refuses anything but a regular file and does not follow links; a
// missing file is not an error (removed false).
type Remover[N Member] interface {
	Remove(ctx context.Context, n N, p string) (removed bool, err error)
}

// Exister is implemented by a driver that can tell whether a file exists
// without following links: touch then reports whether it created the
// marker, so its undo never removes a file that was there before.
type Exister[N Member] interface {
	Exists(ctx context.Context, n N, p string) (bool, error)
}

// Kind names what a file of mode m is, for messages: "a regular file",
// "a folder", "a symbolic link", ...
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// NotAFile is Remove's refusal of what is at p, which is not a regular
// file: it names what it is (a folder, a symbolic link, ...), and says it
// was left.
func NotAFile(p string, m fs.FileMode) error {
	return fmt.Errorf("%s is %s, not a file touch made: left as it is", p, Kind(m))
}

// setConfig serves set_config: the value it replaces is read first (when
// the driver can), so that restore_config can put it back.
func (k *Kit[N]) setConfig(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
	key, value := r.String("key"), r.String("value")
	out := map[string]cty.Value{"existed": cty.NullVal(cty.Bool), "previous": cty.NullVal(cty.String)}
	if cr, ok := k.driver.(ConfigReader[N]); ok {
		prev, existed, err := cr.ReadConfig(ctx, n, key)
		if err != nil {
			return nil, err
		}
		out["existed"] = cty.BoolVal(existed)
		if existed {
			out["previous"] = cty.StringVal(prev)
		}
	}
	changed, err := k.driver.SetConfig(ctx, n, key, value)
	out["changed"] = cty.BoolVal(changed)
	return out, err
}

// restoreConfig serves restore_config, the undo of set_config.
func (k *Kit[N]) restoreConfig(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
	cr, ok := k.driver.(ConfigReader[N])
	if !ok {
		return nil, fmt.Errorf("the %s plugin cannot restore a config key", k.plugin)
	}
	var a struct {
		Existed  *bool   `cty:"existed"`
		Previous *string `cty:"previous"`
	}
	if err := r.Decode(&a); err != nil {
		return nil, err
	}
	if a.Existed == nil {
		return nil, sdk.ArgError("existed", "the value key %q had before set_config is not known, so it cannot be put back: set it by hand", r.String("key"))
	}
	if *a.Existed && a.Previous == nil {
		return nil, sdk.ArgError("previous", "key %q was set before set_config, but its value is not known: set it by hand", r.String("key"))
	}
	value := ""
	if a.Previous != nil {
		value = *a.Previous
	}
	changed, err := cr.RestoreConfig(ctx, n, r.String("key"), value, *a.Existed)
	return map[string]cty.Value{"changed": cty.BoolVal(changed)}, err
}

// touch serves touch, saying whether it made the file.
func (k *Kit[N]) touch(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
	p, err := n.Base().InDataDir(r.String("path"))
	if err != nil {
		return nil, sdk.ArgError("path", "node %s: %s", n.Base().Name, err)
	}
	created := cty.NullVal(cty.Bool)
	if ex, ok := k.driver.(Exister[N]); ok {
		there, err := ex.Exists(ctx, n, p)
		if err != nil {
			return nil, err
		}
		created = cty.BoolVal(!there)
	}
	return map[string]cty.Value{"path": cty.StringVal(p), "created": created}, k.driver.Touch(ctx, n, p)
}

// remove serves remove, the undo of touch: a file that was there before
// touch (created = false) is left.
func (k *Kit[N]) remove(ctx context.Context, n N, r *sdk.Request) (map[string]cty.Value, error) {
	p, err := n.Base().InDataDir(r.String("path"))
	if err != nil {
		return nil, sdk.ArgError("path", "node %s: %s", n.Base().Name, err)
	}
	if !r.Bool("created", true) {
		return map[string]cty.Value{"removed": cty.False}, nil
	}
	rm, ok := k.driver.(Remover[N])
	if !ok {
		return nil, fmt.Errorf("the %s plugin cannot remove a file", k.plugin)
	}
	removed, err := rm.Remove(ctx, n, p)
	return map[string]cty.Value{"removed": cty.BoolVal(removed)}, err
}

// preflight serves preflight: each node is asked, changing nothing,
// whether it can be upgraded; every problem is reported at once.
func (k *Kit[N]) preflight(ctx context.Context, r *sdk.Request) (cty.Value, error) {
	var a struct {
		Nodes []string `cty:"nodes"`
	}
	if err := r.Decode(&a); err != nil {
		return cty.NilVal, err
	}
	names := a.Nodes
	want, target := r.String("version"), r.String("target")
	k.mu.RLock()
	configured := k.nodes != nil
	k.mu.RUnlock()
	if !configured {
		return cty.NilVal, fmt.Errorf("the %s plugin was not configured", k.plugin)
	}
	var problems []string
	versions := map[string]cty.Value{}
	seen := map[string][]string{} // version -> nodes
	for _, name := range names {
		m, ok := k.Node(name)
		if !ok {
			problems = append(problems, fmt.Sprintf("node %s: not in this pool", name))
			continue
		}
		v, errs := k.preflightNode(ctx, m, want, target)
		problems = append(problems, errs...)
		if v != "" {
			versions[name] = cty.StringVal(v)
			seen[v] = append(seen[v], name)
		}
	}
	if want == "" && len(seen) > 1 {
		var parts []string
		for v, ns := range seen {
			parts = append(parts, fmt.Sprintf("version %s on %s", v, strings.Join(ns, ", ")))
		}
		sort.Strings(parts)
		problems = append(problems, "the nodes do not run one version: "+strings.Join(parts, "; "))
	}
	return versionsResult(r, problems, versions)
}

// preflightNode checks one node; it returns the version it reports and
// what is wrong.
func (k *Kit[N]) preflightNode(ctx context.Context, n N, want, target string) (string, []string) {
	b := n.Base()
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("node %s: ", b.Name)+fmt.Sprintf(format, args...))
	}
	if cr, ok := k.driver.(ConfigReader[N]); ok {
		if _, _, err := cr.ReadConfig(ctx, n, "version"); err != nil {
			add("config file cannot be read: %s", err)
		}
	}
	if rc, ok := k.driver.(RunningChecker[N]); ok {
		running, err := rc.Running(ctx, n)
		switch {
		case err != nil:
			add("cannot tell whether it runs: %s", err)
		case !running:
			add("its process is not running as the plugin knows it (pid file %q): a node started by hand needs its pid written there, or stop and start cannot manage it", b.PidFile)
		}
	}
	if b.HealthURL == "" {
		return "", problems
	}
	h, err := b.Health(ctx)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named already
		}
		add("health check %s does not answer: %s", b.HealthURL, err)
		return "", problems
	}
	if h.Code != 200 {
		add("health check %s answers HTTP %d: %s", b.HealthURL, h.Code, LastLines(h.Body, 1))
	}
	switch {
	case h.Version == "" && want != "":
		add("its health check reports no version, so it cannot be shown to run version %s", want)
	case h.Version == "":
	case want != "" && h.Version != want:
		add("runs version %s, not %s", h.Version, want)
	case target != "" && h.Version == target:
		add("already runs version %s, the version this run upgrades to", target)
	}
	return h.Version, problems
}

// ConfigValue reads key from a node's JSON config file b: the value's JSON
// text as the file holds it (so a number is put back as a number), and
// whether the key is set.
func ConfigValue(b []byte, key string) (string, bool, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", false, fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := cfg[key]
	return string(raw), ok, nil
}

// RestoreConfigValue returns b with key set back to the JSON text raw
// (ConfigValue's), or removed when !ok, and whether anything changed.
func RestoreConfigValue(b []byte, key, raw string, ok bool) ([]byte, bool, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, false, fmt.Errorf("not a JSON object: %w", err)
	}
	cur, had := cfg[key]
	switch {
	case !ok && !had:
		return b, false, nil
	case !ok:
		delete(cfg, key)
	default:
		if !json.Valid([]byte(raw)) {
			return nil, false, fmt.Errorf("the value to put back for %q is not JSON", key)
		}
		// The same value however it is laid out: the file may have been
		// indented anew since set_config read it.
		if had && sameJSON(cur, []byte(raw)) {
			return b, false, nil
		}
		cfg[key] = json.RawMessage(raw)
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, false, err
	}
	return append(out, '\n'), true, nil
}

// sameJSON reports whether a and b are the same JSON text but for the
// spaces between tokens.
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return string(a) == string(b)
	}
	return ca.String() == cb.String()
}
