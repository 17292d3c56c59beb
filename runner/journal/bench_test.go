package journal

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const benchSteps = 1000

var benchAddrs = func() []string {
	a := make([]string, benchSteps)
	for i := range a {
		a[i] = fmt.Sprintf("step.drain[\"node-%d\"]", i)
	}
	return a
}()

// benchStep is a realistic record: a few hundred bytes of arguments and
// result, as a drain or exec step has.
func benchStep(i int) Step {
	s := Step{
		Address:    benchAddrs[i%benchSteps],
		Status:     Running,
		Action:     "load_balancer.front.drain",
		Plugin:     "haproxy",
		Checksum:   "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Args:       json.RawMessage(`{"server":"node-1","timeout":"60s","backend":"platform","socket":"/run/haproxy/admin.sock"}`),
		Attempts:   1,
		Idempotent: true,
		StartedAt:  t0,
	}
	if i%2 == 1 {
		s.Status, s.EndedAt = Done, t0.Add(time.Second)
		s.Result = json.RawMessage(`{"drained":true,"sessions_left":0,"waited":"1.2s"}`)
		s.ResultType = json.RawMessage(`["object",{"drained":"bool","sessions_left":"number","waited":"string"}]`)
		s.ResultWire = s.Result
	}
	return s
}

// BenchmarkUpdate measures one journal call in 1,000-step runs: each step is
// recorded twice (running, done), then the run finishes (compaction) and a
// new one begins, so the cost of Finish/Begin is amortised in ns/op;
// ms/step is two calls. "record" marks steps running with Record (no
// fsync) and finishes them with Update, as a runner may for idempotent steps.
func BenchmarkUpdate(b *testing.B) {
	for _, mode := range []struct {
		name   string
		opts   Options
		record bool
	}{{"fsync", Options{}, false}, {"record+fsync", Options{}, true}, {"nosync", Options{NoSync: true}, false}} {
		b.Run(mode.name, func(b *testing.B) {
			j, err := OpenWithOptions(b.TempDir(), mode.opts)
			require.NoError(b, err)
			defer j.Close()
			steps := make([]Step, 2*benchSteps)
			for i := range steps {
				steps[i] = benchStep(i / 2 * 2)
				if i%2 == 1 {
					steps[i] = benchStep(i)
					steps[i].Address = steps[i-1].Address
				}
			}
			runs := 0
			begin := func() {
				runs++
				require.NoError(b, j.Begin(&Run{ID: fmt.Sprint("bench-", runs), Playbook: "p"}))
			}
			begin()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				call := j.Update
				if mode.record && steps[i].Status == Running {
					call = j.Record
				}
				if err := call(steps[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(steps) {
					require.NoError(b, j.Finish(Done))
					begin()
					i = 0
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*2/1e6, "ms/step")
		})
	}
}

// BenchmarkUpdateParallel shows group commit: parallel steps share fsyncs.
func BenchmarkUpdateParallel(b *testing.B) {
	j, err := OpenWithOptions(b.TempDir(), Options{})
	require.NoError(b, err)
	defer j.Close()
	require.NoError(b, j.Begin(&Run{ID: "bench"}))
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Update(benchStep(int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRewriteSnapshot is the design not taken: rewrite the whole
// 1,000-step run atomically (temp, fsync, rename, fsync dir) on every update.
func BenchmarkRewriteSnapshot(b *testing.B) {
	dir := b.TempDir()
	hdr := &Run{ID: "bench", Status: Running}
	steps := map[string]json.RawMessage{}
	for i := range benchSteps {
		s := benchStep(2*i + 1)
		steps[s.Address], _ = marshalStep(nil, &s)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := benchStep(i)
		i++
		steps[s.Address], _ = marshalStep(nil, &s)
		if err := writeSnapshot(dir+"/run.json", hdr, steps, uint64(i), true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad10000 loads a 10,000-step run from its snapshot plus a log
// holding a full run's worth of updates (the worst case before compaction).
func BenchmarkLoad10000(b *testing.B) {
	dir := b.TempDir()
	j, err := OpenWithOptions(dir, Options{NoSync: true, CompactAfter: 1 << 30})
	require.NoError(b, err)
	defer j.Close()
	require.NoError(b, j.Begin(&Run{ID: "bench"}))
	for i := range 20000 {
		s := benchStep(i)
		s.Address = fmt.Sprintf("step.s[%d]", i/2)
		require.NoError(b, j.Update(s))
	}
	b.ReportAllocs()
	for b.Loop() {
		run, err := mustOpen(b, dir).Load()
		if err != nil || len(run.Steps) != 10000 {
			b.Fatal(err, len(run.Steps))
		}
	}
}

var pgBenchRuns atomic.Int64

// BenchmarkPGUpdate is BenchmarkUpdate against PostgreSQL (the tests'
// throwaway server, which runs with fsync off: the figures are the
// round trips and transactions, not a disk's flush). "update" commits
// both records of a step; "record+update" marks it running with Record.
func BenchmarkPGUpdate(b *testing.B) {
	dsn := newPGDB(b, pgAdminDSN(b))
	s := openTestPG(b, dsn, testKey(b))
	c := pgCluster("be0c4be0c4be0c4b")
	require.NoError(b, s.Register(b.Context(), c))
	for _, mode := range []struct {
		name   string
		record bool
	}{{"update", false}, {"record+update", true}} {
		b.Run(mode.name, func(b *testing.B) {
			j := s.Journal(c)
			begin := func() {
				// Unique across -count repetitions, which share the cluster.
				id := fmt.Sprint(mode.name, "-", pgBenchRuns.Add(1))
				require.NoError(b, j.Begin(&Run{ID: id, Playbook: "p", Steps: map[string]*Step{}}))
			}
			begin()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				st := benchStep(i)
				st.Address = benchAddrs[(i/2)%benchSteps]
				call := j.Update
				if mode.record && st.Status == Running {
					call = j.Record
				}
				if err := call(st); err != nil {
					b.Fatal(err)
				}
				if i++; i == 2*benchSteps {
					require.NoError(b, j.Finish(Done))
					begin()
					i = 0
				}
			}
			require.NoError(b, j.Finish(Done))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*2/1e6, "ms/step")
		})
	}
}

// BenchmarkPGUpdateParallel shows group commit in PostgreSQL: parallel
// steps' Updates share transactions.
func BenchmarkPGUpdateParallel(b *testing.B) {
	dsn := newPGDB(b, pgAdminDSN(b))
	s := openTestPG(b, dsn, testKey(b))
	c := pgCluster("be0c4be0c4be0c4c")
	require.NoError(b, s.Register(b.Context(), c))
	j := s.Journal(c)
	require.NoError(b, j.Begin(&Run{ID: "bench", Steps: map[string]*Step{}}))
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Update(benchStep(int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
