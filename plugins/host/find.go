package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// PluginPathEnv names the variable that lists folders to find plugins in,
// before the others, separated by colons like PATH. Only absolute paths
// count: a relative one would depend on the current folder, often the
// playbook's.
const PluginPathEnv = "UPSHIFT_PLUGIN_PATH"

// StandardPlugins are the plugins upshift ships (one per folder under
// plugins/ with a main.go; `make build` puts them next to upshift). Their
// names are known even where they are not installed, so that validate
// before init accepts them and suggests them for a misspelt name.
var StandardPlugins = []string{"haproxy", "mysql", "nginx", "postgres", "process", "sqlite", "ssh", "testkit"}

// TrustedDirs lists the folders plugins are found in, in order: each
// absolute folder in $UPSHIFT_PLUGIN_PATH, the folder of the running
// upshift executable (symbolic links resolved), $XDG_DATA_HOME/upshift/plugins
// when XDG_DATA_HOME is set, and ~/.upshift/plugins. These are set by the
// operator and the machine's admin, never by a playbook: not the playbook
// folder, not ./bin, not PATH.
func TrustedDirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv(PluginPathEnv)) {
		if filepath.IsAbs(d) {
			dirs = append(dirs, filepath.Clean(d))
		}
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		dirs = append(dirs, filepath.Join(d, "upshift", "plugins"))
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		dirs = append(dirs, filepath.Join(home, ".upshift", "plugins"))
	}
	return dedupe(dirs)
}

func dedupe(dirs []string) []string {
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// ignoredPathEntries are the relative entries of $UPSHIFT_PLUGIN_PATH, for
// the message of a failed search.
func ignoredPathEntries() []string {
	var out []string
	for _, d := range filepath.SplitList(os.Getenv(PluginPathEnv)) {
		if d != "" && !filepath.IsAbs(d) {
			out = append(out, d)
		}
	}
	return out
}

// BinaryFor is the file name to look for: a playbook's source when it is a
// bare file name ("my-haproxy"), else upshift-plugin-<name>. A source that
// is a path is refused by Resolve.
func BinaryFor(name, source string) string {
	if source != "" && !isPath(source) {
		return source
	}
	return BinaryName(name)
}

func isPath(source string) bool {
	return strings.ContainsRune(source, '/') || strings.ContainsRune(source, filepath.Separator)
}

// Resolve finds the binary of a required plugin in the trusted folders
// (TrustedDirs). A source that is a path is refused: a playbook names a
// plugin, it does not say where code comes from.
func Resolve(r Requirement) (string, error) {
	if isPath(r.Source) {
		return "", fmt.Errorf("plugin %s: source %q is a path, and upshift does not run binaries from where a playbook says; install %s in a trusted plugin folder (%s, or a folder in $%s) and write source = %q or leave source out",
			r.Name, r.Source, filepath.Base(r.Source), strings.Join(TrustedDirs(), ", "), PluginPathEnv, filepath.Base(r.Source))
	}
	return Find(r.Name, BinaryFor(r.Name, r.Source), TrustedDirs())
}

// Find returns the path of plugin name's binary called bin, looking in dirs
// in order. A binary that someone other than root or this user could
// change (CheckTrusted) is refused, with what to fix. When none is found
// the error lists every place it looked and why each did not do.
func Find(name, bin string, dirs []string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if bin == "" || bin == "." || bin == ".." || strings.ContainsAny(bin, `/\`) {
		return "", fmt.Errorf("plugin %s: invalid binary name %q", name, bin)
	}
	var looked []string
	for _, d := range dirs {
		cand := filepath.Join(d, bin)
		st, err := os.Stat(cand)
		if err != nil {
			looked = append(looked, fmt.Sprintf("%s (%s)", cand, reason(err)))
			continue
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			looked = append(looked, fmt.Sprintf("%s (not an executable file)", cand))
			continue
		}
		abs, err := filepath.Abs(cand)
		if err != nil {
			return "", err
		}
		if err := CheckTrusted(abs); err != nil {
			return "", fmt.Errorf("plugin %s: refusing %s: %w", name, abs, err)
		}
		return abs, nil
	}
	for _, d := range ignoredPathEntries() {
		looked = append(looked, fmt.Sprintf("%s (in $%s, ignored: not an absolute path)", d, PluginPathEnv))
	}
	return "", &NotFoundError{Name: name, Bin: bin, Looked: looked}
}

// NotFoundError is a plugin binary none of the trusted folders holds.
type NotFoundError struct {
	Name, Bin string
	Looked    []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("plugin %s: no %s found; looked in:\n  - %s\nplugins are found only in these folders; install it in one, or add its folder to $%s",
		e.Name, e.Bin, strings.Join(e.Looked, "\n  - "), PluginPathEnv)
}

// Installed lists the names of the plugins the trusted folders hold
// (upshift-plugin-NAME executables), sorted.
func Installed() []string {
	seen := map[string]bool{}
	for _, d := range TrustedDirs() {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
			if !ok || validName(name) != nil || e.IsDir() {
				continue
			}
			if info, err := e.Info(); err == nil && info.Mode().Perm()&0o111 != 0 {
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Suggest returns the known name closest to name when it is close enough
// to be a misspelling of it (edit distance at most a third of its length,
// and at least 1), or "".
func Suggest(name string, known []string) string {
	best, bestD := "", len(name)/3+1
	if bestD < 2 {
		bestD = 2
	}
	for _, k := range known {
		if k == name {
			continue
		}
		if d := distance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func reason(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "not found"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
