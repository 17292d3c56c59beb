// Saved plans: `upshift plan -out FILE` writes what a run would do and what
// it was decided on (the playbook's files and variables, the plugins, what
// the preflight checks saw of the live cluster); `upshift run FILE` applies
// that plan only while all of it still holds, and otherwise names every
// difference. Sensitive values are kept out: arguments as the plan shows
// them, variables as digests.

package runner

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/schema"
)

// SavedPlanFormat is the format version of a saved plan; a reader refuses
// another.
const SavedPlanFormat = 1

// SavedPlan is a plan as `plan -out` writes it.
type SavedPlan struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// Playbook is the playbook folder (absolute); VarFiles the -var-file
	// files (absolute), Vars the -var flags of variables not sensitive.
	Playbook string   `json:"playbook"`
	VarFiles []string `json:"var_files,omitempty"`
	Vars     []string `json:"vars,omitempty"`
	// Digest is the playbook's files and variables together (the journal's
	// digest); Files and Variables digest each one, to name what changed.
	Digest string `json:"digest"`
	// Salt makes the variables' digests this plan's own: a digest of a
	// weak password is not one to look up.
	Salt      string            `json:"salt"`
	Files     map[string]string `json:"files"`
	Variables map[string]string `json:"variables"`
	// Cluster is the cluster's identity (journal.Cluster.ID).
	Cluster string `json:"cluster"`
	// Plugins are the plugin binaries by resource address.
	Plugins map[string]SavedPlugin `json:"plugins"`
	// Observed is what each preflight check returned, sensitive values
	// hidden, by its address.
	Observed map[string]json.RawMessage `json:"observed"`
	Steps    []SavedStep                `json:"steps"`
	Gates    []string                   `json:"gates,omitempty"`
}

// SavedPlugin is the plugin binary behind a resource.
type SavedPlugin struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// SavedStep is one step of a saved plan, with its arguments as the plan
// shows them (sensitive ones "(sensitive)", unknown ones null).
type SavedStep struct {
	Address string          `json:"address"`
	Action  string          `json:"action"`
	Args    json.RawMessage `json:"args"`
}

// SavePlan makes the saved form of p: pb's files and variables, the
// plugins, and what the preflight checks returned (pre.Results).
// salt is the saved plan's to compare with; "" makes a new one.
func SavePlan(p *Plan, plugins map[string]PluginInfo, pre *PreflightReport, cluster, salt string) (*SavedPlan, error) {
	pb := p.Graph.Playbook
	if salt == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		salt = hex.EncodeToString(b)
	}
	sp := &SavedPlan{Format: SavedPlanFormat, Playbook: pb.Dir, Cluster: cluster, Files: FileDigests(pb), Variables: VariableDigests(pb, salt), Salt: salt,
		Plugins: map[string]SavedPlugin{}, Observed: map[string]json.RawMessage{}}
	for addr, info := range plugins {
		sp.Plugins[addr] = SavedPlugin{Name: info.Name, SHA256: info.Checksum}
	}
	for _, inst := range p.Graph.Preflights {
		v, ok := pre.Results[inst.Addr]
		// The load balancer's and the nodes' answers are the cluster's
		// layout; a database's (its size) moves with every write.
		if kind := inst.Step.Run.Resource.Kind; !ok || kind != schema.KindLoadBalancer && kind != schema.KindNodePool {
			continue
		}
		sp.Observed[inst.Addr] = redactedJSON(v, inst.Step.Run.Action.Result)
	}
	for i, ps := range p.Steps {
		js, err := jsonStepOf(p.Graph, i, ps, nil)
		if err != nil {
			return nil, err
		}
		args, err := json.Marshal(js.Args)
		if err != nil {
			return nil, err
		}
		sp.Steps = append(sp.Steps, SavedStep{Address: js.Address, Action: js.Action, Args: args})
	}
	for _, gv := range p.Graph.Gates {
		sp.Gates = append(sp.Gates, gv.Addr+": "+gv.Describe())
	}
	return sp, nil
}

// Write writes the saved plan to path, readable by its owner only (it
// names hosts, paths and the cluster's layout).
func (sp *SavedPlan) Write(path string) error {
	b, err := json.MarshalIndent(sp, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// ReadSavedPlan reads a saved plan; a file that is not one says so.
func ReadSavedPlan(path string) (*SavedPlan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sp SavedPlan
	if err := json.Unmarshal(b, &sp); err != nil || sp.Playbook == "" {
		return nil, fmt.Errorf("%s is not a saved plan of upshift plan -out", path)
	}
	// The file is indented for people; values compare in compact form,
	// as SavePlan makes them.
	for i := range sp.Steps {
		sp.Steps[i].Args = compactJSON(sp.Steps[i].Args)
	}
	for k, v := range sp.Observed {
		sp.Observed[k] = compactJSON(v)
	}
	if sp.Format != SavedPlanFormat {
		return nil, fmt.Errorf("%s is a saved plan of format %d; this upshift reads format %d: make it again with upshift plan -out", path, sp.Format, SavedPlanFormat)
	}
	return &sp, nil
}

// Differences lists, one line each, what differs between the plan as
// saved (sp) and as made again now (now): files, variables, cluster,
// plugins, what preflight sees, then the steps. Empty when it still holds.
func (sp *SavedPlan) Differences(now *SavedPlan) []string {
	var out []string
	out = append(out, mapDiff("file", sp.Files, now.Files, func(a, b string) string { return "changed" })...)
	out = append(out, mapDiff("variable", sp.Variables, now.Variables, func(a, b string) string { return "changed value" })...)
	if sp.Cluster != now.Cluster {
		out = append(out, fmt.Sprintf("cluster: the playbook points at cluster %s now, not %s", short(now.Cluster), short(sp.Cluster)))
	}
	was, is := map[string]string{}, map[string]string{}
	for addr, p := range sp.Plugins {
		was[addr] = p.Name + " sha256:" + p.SHA256
	}
	for addr, p := range now.Plugins {
		is[addr] = p.Name + " sha256:" + p.SHA256
	}
	out = append(out, mapDiff("plugin of", was, is, func(a, b string) string { return a + " -> " + b })...)
	obsWas, obsNow := map[string]string{}, map[string]string{}
	for k, v := range sp.Observed {
		obsWas[k] = string(v)
	}
	for k, v := range now.Observed {
		obsNow[k] = string(v)
	}
	out = append(out, mapDiff("preflight saw, at", obsWas, obsNow, func(a, b string) string { return a + " -> " + b })...)
	stepsWas, stepsNow := map[string]string{}, map[string]string{}
	for _, s := range sp.Steps {
		stepsWas[s.Address] = s.Action + " " + string(s.Args)
	}
	for _, s := range now.Steps {
		stepsNow[s.Address] = s.Action + " " + string(s.Args)
	}
	out = append(out, mapDiff("step", stepsWas, stepsNow, func(a, b string) string { return a + " -> " + b })...)
	if strings.Join(sp.Gates, "\n") != strings.Join(now.Gates, "\n") {
		out = append(out, fmt.Sprintf("gates: %q -> %q", sp.Gates, now.Gates))
	}
	return out
}

// mapDiff names the keys added, removed or changed between two maps,
// sorted; changed says how a value changed.
func mapDiff(what string, was, is map[string]string, changed func(a, b string) string) []string {
	keys := map[string]bool{}
	for k := range was {
		keys[k] = true
	}
	for k := range is {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		a, hadA := was[k]
		b, hasB := is[k]
		switch {
		case !hadA:
			out = append(out, fmt.Sprintf("%s %s: added", what, k))
		case !hasB:
			out = append(out, fmt.Sprintf("%s %s: gone", what, k))
		case a != b:
			out = append(out, fmt.Sprintf("%s %s: %s", what, k, changed(a, b)))
		}
	}
	return out
}

// FileDigests digests each file of the playbook by base name.
func FileDigests(pb *playbooks.Playbook) map[string]string {
	out := map[string]string{}
	for name, f := range pb.Files {
		sum := sha256.Sum256(f.Bytes)
		out[filepath.Base(name)] = hex.EncodeToString(sum[:])
	}
	return out
}

// VariableDigests digests each variable's value with salt, so a saved
// plan names the variable that changed without holding a sensitive value.
func VariableDigests(pb *playbooks.Playbook, salt string) map[string]string {
	out := map[string]string{}
	for name, v := range pb.Variables {
		if v.Value == cty.NilVal || !v.Value.IsWhollyKnown() {
			continue
		}
		val, _ := v.Value.UnmarkDeep()
		b, err := ctyjson.Marshal(val, val.Type())
		if err != nil {
			continue
		}
		h := sha256.New()
		io.WriteString(h, salt+"\x00"+name+"\x00")
		h.Write(b)
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

func compactJSON(b json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}
