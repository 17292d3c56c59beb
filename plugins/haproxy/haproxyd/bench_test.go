package haproxyd_test

import (
	"context"
	"testing"

	"github.com/upshift-dev/upshift/plugins/haproxy/haproxyd"
	"github.com/upshift-dev/upshift/plugins/haproxy/internal/testlab"
)

// BenchmarkShowStat measures one `show stat` round trip and parse: the cost
// of each poll of drain and enable.
func BenchmarkShowStat(b *testing.B) {
	if !haproxyd.Available() {
		b.Skip("haproxy is not installed")
	}
	var servers []haproxyd.Server
	for _, n := range []string{"s1", "s2", "s3"} {
		be := testlab.StartBackend(b, n)
		servers = append(servers, haproxyd.Server{Name: n, Addr: be.Addr})
	}
	inst, err := haproxyd.Start(context.Background(), haproxyd.Config{Servers: servers, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = inst.Stop() })
	c := inst.Client()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := c.Servers(ctx, "app"); err != nil {
			b.Fatal(err)
		}
	}
}
