package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SearchPath lists where Find looks for a plugin, in order: the explicit
// source (a path to the binary, or to a folder holding it; relative to the
// playbook folder) when the playbook gives one, <playbook>/.upshift/plugins,
// the folder of the running upshift executable, then ./bin. Find tries PATH
// after all of these. A source that is a bare file name (no slash) is not a
// path but the binary's name (see BinaryFor), so it adds no place to look.
func SearchPath(source, playbookDir string) []string {
	var dirs []string
	if strings.ContainsRune(source, '/') || strings.ContainsRune(source, filepath.Separator) {
		p := source
		if !filepath.IsAbs(p) {
			p = filepath.Join(playbookDir, p)
		}
		dirs = append(dirs, p)
	}
	if playbookDir == "" {
		playbookDir = "."
	}
	dirs = append(dirs, filepath.Join(playbookDir, ".upshift", "plugins"))
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	return append(dirs, "bin")
}

// BinaryFor is the file name to look for: a playbook's source when it is a
// bare file name ("my-haproxy"), else upshift-plugin-<name>.
func BinaryFor(name, source string) string {
	if source != "" && !strings.ContainsRune(source, '/') && !strings.ContainsRune(source, filepath.Separator) {
		return source
	}
	return BinaryName(name)
}

// Find returns the path of plugin name's binary called bin, looking in dirs
// in order (an entry may be the binary itself or a folder holding it), then
// on PATH. The error lists every place it looked and why each did not do.
func Find(name, bin string, dirs []string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if bin == "" || bin == "." || bin == ".." || strings.ContainsAny(bin, `/\`) {
		return "", fmt.Errorf("plugin %s: invalid binary name %q", name, bin)
	}
	var looked []string
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			looked = append(looked, fmt.Sprintf("%s (%s)", d, reason(err)))
			continue
		}
		cand := d
		if st.IsDir() {
			cand = filepath.Join(d, bin)
			if st, err = os.Stat(cand); err != nil {
				looked = append(looked, fmt.Sprintf("%s (%s)", cand, reason(err)))
				continue
			}
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			looked = append(looked, fmt.Sprintf("%s (not an executable file)", cand))
			continue
		}
		abs, err := filepath.Abs(cand)
		if err != nil {
			return "", err
		}
		return abs, nil
	}
	p, err := exec.LookPath(bin)
	if err == nil {
		return filepath.Abs(p)
	}
	looked = append(looked, "PATH")
	return "", fmt.Errorf("plugin %s: no %s found; looked in:\n  - %s", name, bin, strings.Join(looked, "\n  - "))
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
