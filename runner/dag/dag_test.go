package dag

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type v string

func (x v) Name() string { return string(x) }

func build(edges ...string) *Graph {
	g := New()
	for _, e := range edges {
		var a, b string
		if n, _ := fmt.Sscanf(e, "%s -> %s", &a, &b); n == 2 {
			g.Add(v(a))
			g.Add(v(b))
			g.Connect(a, b)
		} else {
			g.Add(v(e))
		}
	}
	return g
}

func TestTopologicalOrderIsStableAndRespectsEdges(t *testing.T) {
	g := New()
	for _, n := range []string{"c", "a", "b", "d"} {
		g.Add(v(n))
	}
	g.Connect("a", "b") // a after b
	g.Connect("d", "a")
	order, err := g.TopologicalOrder()
	require.NoError(t, err)
	assert.Equal(t, []string{"c", "b", "a", "d"}, order)
}

func TestCyclesNameEveryCycle(t *testing.T) {
	g := build("a -> b", "b -> c", "c -> a", "x -> y", "y -> x", "s -> s", "free")
	err := g.Validate()
	var ce *CycleError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, [][]string{{"a", "b", "c"}, {"x", "y"}, {"s"}}, ce.Cycles)
	assert.Equal(t, "dependency cycle: a -> b -> c -> a; x -> y -> x; s -> s", err.Error())
	_, err = g.TopologicalOrder()
	assert.Error(t, err)
}

func TestTransitiveReduction(t *testing.T) {
	g := build("c -> b", "b -> a", "c -> a", "d -> a")
	g.TransitiveReduction()
	assert.False(t, g.DependsOn("c", "a"))
	assert.True(t, g.DependsOn("c", "b"))
	assert.True(t, g.DependsOn("b", "a"))
	assert.True(t, g.DependsOn("d", "a"))
	assert.Equal(t, 3, g.EdgeCount())
}

func TestWalkSkipsDependentsOfAFailure(t *testing.T) {
	// a <- b <- c ; a <- d ; e independent; f always runs after b
	g := build("b -> a", "c -> b", "d -> a", "e", "f -> b", "h -> f")
	boom := errors.New("boom")
	var ran sync.Map
	out, err := g.Walk(context.Background(), WalkOptions{
		RunAnyway: func(x Vertex) bool { return x.Name() == "f" },
	}, func(_ context.Context, x Vertex) error {
		ran.Store(x.Name(), true)
		if x.Name() == "b" {
			return boom
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, Done, out["a"].State)
	assert.Equal(t, Failed, out["b"].State)
	assert.ErrorIs(t, out["b"].Err, boom)
	assert.Equal(t, Skipped, out["c"].State)
	assert.Equal(t, "b", out["c"].Cause)
	assert.Equal(t, Done, out["d"].State)
	assert.Equal(t, Done, out["e"].State)
	assert.Equal(t, Done, out["f"].State, "always-run vertex runs after the failure")
	assert.True(t, out["f"].Tainted)
	assert.Equal(t, Skipped, out["h"].State, "dependents of an always-run vertex stay skipped")
	assert.Equal(t, "b", out["h"].Cause)
	_, ranC := ran.Load("c")
	assert.False(t, ranC)
}

func TestWalkBoundsParallelism(t *testing.T) {
	g := New()
	for i := 0; i < 20; i++ {
		g.Add(v(fmt.Sprint(i)))
	}
	var cur, peak atomic.Int32
	_, err := g.Walk(context.Background(), WalkOptions{Parallelism: 3}, func(context.Context, Vertex) error {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int32(3), peak.Load())
}

func TestWalkStopStartsNothingNew(t *testing.T) {
	g := build("b -> a", "c -> b")
	stop := make(chan struct{})
	out, err := g.Walk(context.Background(), WalkOptions{Stop: stop}, func(_ context.Context, x Vertex) error {
		if x.Name() == "a" {
			close(stop)
		}
		return nil
	})
	assert.ErrorIs(t, err, ErrStopped)
	assert.Equal(t, Done, out["a"].State, "the running vertex finishes")
	assert.Equal(t, NotStarted, out["b"].State)
	assert.Equal(t, NotStarted, out["c"].State)
}

func TestWalkSkipFunctionMarksDone(t *testing.T) {
	g := build("b -> a")
	var calls []string
	out, err := g.Walk(context.Background(), WalkOptions{Parallelism: 1, Skip: func(x Vertex) bool { return x.Name() == "a" }},
		func(_ context.Context, x Vertex) error { calls = append(calls, x.Name()); return nil })
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, calls)
	assert.Equal(t, Done, out["a"].State)
}

func TestWalkRefusesCycles(t *testing.T) {
	g := build("a -> b", "b -> a")
	_, err := g.Walk(context.Background(), WalkOptions{}, func(context.Context, Vertex) error { return nil })
	var ce *CycleError
	assert.ErrorAs(t, err, &ce)
}

func BenchmarkWalk10000Chain(b *testing.B) {
	g := New()
	prev := ""
	for i := 0; i < 10000; i++ {
		n := fmt.Sprint(i)
		g.Add(v(n))
		if prev != "" {
			g.Connect(n, prev)
		}
		prev = n
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.Walk(context.Background(), WalkOptions{}, func(context.Context, Vertex) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTransitiveReductionMatchesBruteForce compares the pruned search with
// the definition on random DAGs: an edge stays exactly when no other path
// joins its ends, and reachability is unchanged.
func TestTransitiveReductionMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		n := 2 + rng.IntN(30)
		g := New()
		// Vertices are added in a shuffled order so that ids and topological
		// positions differ.
		perm := rng.Perm(n)
		for _, i := range perm {
			g.Add(v(fmt.Sprint(i)))
		}
		for a := 0; a < n; a++ {
			for b := 0; b < a; b++ {
				if rng.Float64() < 0.3 {
					g.Connect(fmt.Sprint(a), fmt.Sprint(b)) // a depends on b: acyclic by construction
				}
			}
		}
		before := reach(g, n)
		want := map[[2]int]bool{}
		for a := 0; a < n; a++ {
			for b := 0; b < a; b++ {
				if !g.DependsOn(fmt.Sprint(a), fmt.Sprint(b)) {
					continue
				}
				implied := false
				for c := 0; c < n; c++ {
					if c != b && g.DependsOn(fmt.Sprint(a), fmt.Sprint(c)) && before[c][b] {
						implied = true
					}
				}
				want[[2]int{a, b}] = !implied
			}
		}
		g.TransitiveReduction()
		for e, keep := range want {
			require.Equal(t, keep, g.DependsOn(fmt.Sprint(e[0]), fmt.Sprint(e[1])), "trial %d: edge %d -> %d", trial, e[0], e[1])
		}
		require.Equal(t, before, reach(g, n), "trial %d: reachability changed", trial)
	}
}

// reach is the transitive closure by repeated search, for checking only.
func reach(g *Graph, n int) [][]bool {
	r := make([][]bool, n)
	for a := 0; a < n; a++ {
		r[a] = make([]bool, n)
		stack := g.Dependencies(fmt.Sprint(a))
		for len(stack) > 0 {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			var i int
			fmt.Sscan(w, &i)
			if r[a][i] {
				continue
			}
			r[a][i] = true
			stack = append(stack, g.Dependencies(w)...)
		}
	}
	return r
}
