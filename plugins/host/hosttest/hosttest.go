// Package hosttest owns helpers for tests that need real plugin binaries:
// building one with `go build` into a folder and pinning it, so host, runner
// and end-to-end tests launch exactly what they built.
package hosttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/upshift-dev/upshift/plugins/host"
)

// TestkitPackage is the import path of the testkit plugin.
const TestkitPackage = "github.com/upshift-dev/upshift/plugins/testkit"

// Build compiles the plugin package pkg (an import path) as
// <outDir>/upshift-plugin-<name> and returns the binary's path and its
// checksum. Meant for TestMain, so it returns errors rather than taking a
// testing.TB.
func Build(pkg, name, outDir string) (path, sha256 string, err error) {
	path = filepath.Join(outDir, host.BinaryName(name))
	// `go test` puts its own toolchain first on PATH.
	// The same flags as the Makefile, so benchmarks measure what ships.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build %s: %w\n%s", pkg, err, strings.TrimSpace(string(out)))
	}
	// Whatever the umask: a plugin binary others can write is refused.
	if err := os.Chmod(path, 0o755); err != nil {
		return "", "", err
	}
	sum, err := host.Checksum(path)
	if err != nil {
		return "", "", err
	}
	return path, sum, nil
}

// BuildTestkit builds the testkit plugin into outDir.
func BuildTestkit(outDir string) (path, sha256 string, err error) {
	return Build(TestkitPackage, "testkit", outDir)
}
