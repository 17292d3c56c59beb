package host_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/upshift-dev/upshift/plugins/host"
)

func TestProbeLaunch(t *testing.T) {
	for i := 0; i < 2; i++ {
		t1 := time.Now()
		l := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Trace, TimeFormat: "15:04:05.000000"})
		p, err := host.Launch(context.Background(), host.LaunchSpec{Name: "testkit", Path: testkitPath, SHA256: testkitSum, Logger: l})
		if err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		p.Close()
		t.Logf("start %s launch %v", t1.Format("15:04:05.000000"), t2.Sub(t1))
	}
}
