package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/dbgen"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// BenchmarkBackupAndCopy backs up and copies a generated database A
// (dbgen: UPSHIFT_BENCH_DB_SIZE=1GB for 1 GB, =10M for 10 million rows;
// 20,000 rows by default) with the plugin and natively on the same disk in
// the same run: cp of the file (exact only while nobody writes A; and
// then synced, durable as the plugin's copy is), the sqlite3 shell's
// .backup (the same online backup API, in C) and VACUUM
// INTO (what the plugin used before):
//
//	go test -run '^$' -bench BackupAndCopy -benchtime 1x ./plugins/sqlite
func BenchmarkBackupAndCopy(b *testing.B) {
	n, err := dbgen.SizeFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	if !n.Big() {
		b.Logf("database A of %s; set %s=1GB for one of real size", n, dbgen.SizeEnv)
	}
	ctx := context.Background()
	dir := b.TempDir()
	a := filepath.Join(dir, "a.sqlite")
	t0 := time.Now()
	if err := dbgen.SQLite(ctx, a, n); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(a)
	if err != nil {
		b.Fatal(err)
	}
	size := st.Size()
	b.Logf("A: %s, %d MiB, generated in %s", n, size>>20, time.Since(t0).Round(time.Second))

	p := sdktest.Provider(b, newPlugin())
	if d := p.Configure(ctx, plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(a)})}); d.HasErrors() {
		b.Fatal(d.Err())
	}
	// The plugin's lines that say how it copied (file copy or backup API,
	// how long A's write lock was held) go to the benchmark's log.
	invoke := func(action string, args map[string]cty.Value) {
		r := p.Invoke(ctx, plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args), Progress: func(l string) {
			if !meterLine.MatchString(l) {
				b.Logf("%s: %s", action, l)
			}
		}})
		if r.Diagnostics.HasErrors() {
			b.Fatal(r.Diagnostics.Err())
		}
	}
	run := func(name string, op func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				for _, f := range []string{"b.sqlite", "b.sqlite" + copyMarker, "backup.sqlite", "n.sqlite"} {
					os.Remove(filepath.Join(dir, f))
				}
				// The last operation's writes on disk first: each is timed
				// with its own writes, not the one before's.
				syscall.Sync()
				b.StartTimer()
				op(b)
			}
			b.ReportMetric(float64(size)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
		})
	}
	to := func(f string) cty.Value { return cty.StringVal(filepath.Join(dir, f)) }
	copyArgs := map[string]cty.Value{"to": to("b.sqlite"), "replace": cty.NullVal(cty.Bool)}
	shell := func(b *testing.B, name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", name, err, out)
		}
	}
	run("upshift-backup", func(*testing.B) { invoke("backup", map[string]cty.Value{"to": to("backup.sqlite")}) })
	run("upshift-copy", func(*testing.B) { invoke("copy", copyArgs) })
	run("native-cp", func(b *testing.B) { shell(b, "cp", a, filepath.Join(dir, "n.sqlite")) })
	// cp made durable, as upshift's copy is (it syncs B before renaming it
	// into place): the fair reference for a copy that survives a crash.
	run("native-cp-fsync", func(b *testing.B) {
		shell(b, "cp", a, filepath.Join(dir, "n.sqlite"))
		shell(b, "sync", filepath.Join(dir, "n.sqlite"))
	})
	run("native-sqlite3-backup", func(b *testing.B) {
		if _, err := exec.LookPath("sqlite3"); err != nil {
			b.Skip("no sqlite3 shell (apt-get install sqlite3)")
		}
		shell(b, "sqlite3", a, ".backup "+filepath.Join(dir, "n.sqlite"))
	})
	run("native-vacuum-into", func(b *testing.B) {
		db, err := sql.Open("sqlite", "file:"+a)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("VACUUM INTO ?", filepath.Join(dir, "n.sqlite")); err != nil {
			b.Fatal(err)
		}
	})
	// Backup and copy as the shipped playbook runs them: at once.
	run("upshift-backup+copy", func(*testing.B) {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); invoke("backup", map[string]cty.Value{"to": to("backup.sqlite")}) }()
		go func() { defer wg.Done(); invoke("copy", copyArgs) }()
		wg.Wait()
	})
}
