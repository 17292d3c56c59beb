package main

import (
	"bytes"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTable reads real `go test -bench` lines (benchfmt drops the
// Benchmark prefix, keeps -GOMAXPROCS and tidies MB and ns/op: the table
// must still find every figure) and checks the figures, the sums over the
// demos and the database ratios against the fastest native way.
func TestTable(t *testing.T) {
	f, err := os.Open("testdata/bench.txt")
	require.NoError(t, err)
	defer f.Close()
	rs, err := read(f)
	require.NoError(t, err)
	var out bytes.Buffer
	write(&out, rs)
	text := out.String()
	line := func(re string) {
		t.Helper()
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+re), text)
	}
	line(`exec of /bin/true through the process plugin, per step +9\.94 ms +<= 1\.2 ms MISSED`)
	line(`  of which: spawning /bin/true .* +1\.90 ms +\(reference\)`)
	line(`10,000 no-op steps, peak heap +85 MB +<= 150 MB met`)
	line(`lab demo, SQLite: write outage +4\.39 s`)
	line(`lab demos: failed requests +2 +0 MISSED`) // 0 + 2 over the two demos
	line(`lab demos: acknowledged writes lost +0 +0 met`)
	line(`run to first step, 3 plugins +\(not run\)`)
	line(`postgres +4\.50 +0\.20 +0\.30 +3\.10 +1\.00 +50%`)
	line(`sqlite +4\.39 +0\.02 +0\.02 +- +1\.12 +66%`)
	line(`PostgreSQL +copy, no session on A +49\.1 s +native-create-database-template-file-copy +20\.0 s +2\.46 +<= 1\.5 MISSED`)
	line(`SQLite +copy +1\.0 s +native-cp-fsync +1\.1 s +0\.91 +<= 1\.5 met`)
	line(`MariaDB +copy +301\.0 s +\(not run\)`)
	line(`runner +BenchmarkRollout10000 +4\.041 sec/op  0\.3038 ms/step  85\.38 peak-heap-MB`)
}
