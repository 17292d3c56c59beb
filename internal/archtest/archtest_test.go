package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/upshift-dev/upshift"

// pkg is what `go list -json` says of a package, the parts used here.
type pkg struct {
	ImportPath string
	Imports    []string // direct, non-test
	Deps       []string // transitive, non-test
}

// listAll lists every package of the module with its imports and deps.
func listAll(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	all := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		require.NoError(t, dec.Decode(&p))
		all[strings.TrimPrefix(p.ImportPath, module+"/")] = &p
	}
	require.Contains(t, all, "cmd/upshift", "go list found no upshift packages")
	return all
}

// ours returns the project's packages among paths, relative to the module.
func ours(paths []string, match func(string) bool) []string {
	var out []string
	for _, p := range paths {
		rel, ok := strings.CutPrefix(p, module+"/")
		if ok && match(rel) {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out
}

func under(prefixes ...string) func(string) bool {
	return func(p string) bool {
		for _, pre := range prefixes {
			if p == pre || strings.HasPrefix(p, pre+"/") {
				return true
			}
		}
		return false
	}
}

// vendors are the vendor plugin folders: each holds one plugin binary's main
// and the packages only it uses.
var vendors = []string{"plugins/haproxy", "plugins/nginx", "plugins/postgres", "plugins/mysql", "plugins/sqlite", "plugins/process", "plugins/ssh", "plugins/testkit"}

// harness is what runs third-party servers, traffic and reports for tests
// and the lab: never part of a plugin.
var harness = under("internal")

func TestVendorPluginsLinkNoTestServer(t *testing.T) {
	all := listAll(t)
	for rel, p := range all {
		if !under(vendors...)(rel) {
			continue
		}
		require.Empty(t, ours(p.Deps, harness), "%s links test or lab support; it belongs in its tests only", rel)
	}
}

func TestVendorPluginsLinkNoOtherVendor(t *testing.T) {
	all := listAll(t)
	for _, v := range vendors {
		for rel, p := range all {
			if !under(v)(rel) {
				continue
			}
			others := ours(p.Deps, func(d string) bool { return under(vendors...)(d) && !under(v)(d) })
			require.Empty(t, others, "%s imports another vendor's code; shared plumbing belongs in plugins/sdk", rel)
		}
	}
}

func TestCoreLinksNoVendorNorHarness(t *testing.T) {
	all := listAll(t)
	core := under("schema", "playbooks", "runner", "plugins/sdk", "plugins/host", "plugins/proto")
	for rel, p := range all {
		if !core(rel) && rel != "plugins" {
			continue
		}
		require.Empty(t, ours(p.Deps, under(vendors...)), "%s links a vendor plugin", rel)
		require.Empty(t, ours(p.Deps, harness), "%s links test or lab support", rel)
	}
}

func TestLeafPackagesImportNothingOfTheProject(t *testing.T) {
	all := listAll(t)
	for _, rel := range []string{"runner/dag", "runner/journal", "plugins/proto/v1"} {
		require.Contains(t, all, rel)
		require.Empty(t, ours(all[rel].Deps, func(string) bool { return true }), "%s must stand alone", rel)
	}
}

// TestUpshiftLinksTestServersOnlyForTheLab: every test-server package in the
// upshift binary is there because `upshift lab` needs it, and the CLI's own
// files import none directly.
func TestUpshiftLinksTestServersOnlyForTheLab(t *testing.T) {
	all := listAll(t)
	servers := under("internal/servers", "internal/testlab")
	cli := all["cmd/upshift"]
	require.Empty(t, ours(cli.Imports, servers), "cmd/upshift imports a test server directly; the lab owns them")
	require.Contains(t, all, "internal/lab")
	labDeps := map[string]bool{}
	for _, d := range ours(all["internal/lab"].Deps, servers) {
		labDeps[d] = true
	}
	for _, d := range ours(cli.Deps, servers) {
		require.True(t, labDeps[d], "cmd/upshift links %s, which upshift lab does not need", d)
	}
	require.Empty(t, ours(cli.Deps, under("internal/testlab", "internal/archtest")), "cmd/upshift links a test-only package")
}
