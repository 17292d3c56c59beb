package host_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/plugins/host/hosttest"
)

// The testkit binary every test launches, built once.
var testkitPath, testkitSum string

func TestMain(m *testing.M) {
	if os.Getenv(parentEnv) != "" {
		os.Exit(actAsParent()) // a child of TestPluginsDieWithUpshift
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "upshift-host-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer host.CleanupAll()
	// The trusted plugin folders of the machine running the tests play no
	// part: tests name their own with UPSHIFT_PLUGIN_PATH.
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("HOME", home)
	os.Unsetenv("XDG_DATA_HOME")
	os.Unsetenv(host.PluginPathEnv)
	testkitPath, testkitSum, err = hosttest.BuildTestkit(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// syncBuffer is a log sink safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
