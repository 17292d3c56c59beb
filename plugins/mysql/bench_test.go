package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/internal/dbgen"
	"github.com/upshift-dev/upshift/internal/servers/mariadbd"
	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// BenchmarkBackupAndCopy backs up and copies a generated database A
// (dbgen: UPSHIFT_BENCH_DB_SIZE=1GB for 1 GB, =10M for 10 million rows;
// 20,000 rows by default) with the plugin and with MariaDB's own tools on
// the same server in the same run:
//
//	go test -run '^$' -bench BackupAndCopy -benchtime 1x ./plugins/mysql
func BenchmarkBackupAndCopy(b *testing.B) {
	n, err := dbgen.SizeFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	if !n.Big() {
		b.Logf("database A of %s; set %s=1GB for one of real size", n, dbgen.SizeEnv)
	}
	ctx := context.Background()
	// A buffer pool that holds A and B, a redo log that does not force a
	// checkpoint every few seconds: the server as one would run it.
	srv, err := mariadbd.Start(ctx, mariadbd.Options{Args: []string{"--innodb-buffer-pool-size=3G", "--innodb-log-file-size=1G", "--innodb-use-native-aio=0"}})
	if err != nil {
		b.Skipf("no throwaway MariaDB (install mariadb-server): %v", err)
	}
	defer srv.Stop()
	admin, err := sql.Open("mysql", srv.DSN(""))
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	exec1 := func(q string) {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	exec1("CREATE DATABASE bench_a")
	t0 := time.Now()
	if err := dbgen.MariaDB(ctx, srv.DSN("bench_a"), n); err != nil {
		b.Fatal(err)
	}
	var size int64
	var version string
	if err := admin.QueryRowContext(ctx, "SELECT SUM(data_length + index_length), VERSION() FROM information_schema.tables WHERE table_schema = 'bench_a'").Scan(&size, &version); err != nil {
		b.Fatal(err)
	}
	b.Logf("MariaDB %s; A: %s, %d MiB of tables and indexes, generated in %s", version, n, size>>20, time.Since(t0).Round(time.Second))

	p := sdktest.Provider(b, newPlugin())
	if d := p.Configure(ctx, plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal(srv.DSN("bench_a")), "timeout": cty.StringVal("60s")})}); d.HasErrors() {
		b.Fatal(d.Err())
	}
	dir := b.TempDir()
	d := &my{}
	if err := d.Configure(ctx, plugins.ConfigureRequest{Config: cty.ObjectVal(map[string]cty.Value{"dsn": cty.StringVal(srv.DSN("bench_a")), "timeout": cty.StringVal("60s")})}); err != nil {
		b.Fatal(err)
	}
	cnf, err := d.defaultsFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	dumper, _ := tool("mariadb-dump", "mysqldump")
	client, _ := tool("mariadb", "mysql")
	shell := func(script string) {
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", script, err, out)
		}
	}
	invoke := func(action string, args map[string]cty.Value) {
		r := p.Invoke(ctx, plugins.InvokeRequest{Action: action, Args: cty.ObjectVal(args)})
		if r.Diagnostics.HasErrors() {
			b.Fatal(r.Diagnostics.Err())
		}
	}
	run := func(name string, prepare func(), op func()) {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				prepare()
				// The last operation's writes on disk first: each is timed
				// with its own writes, not the one before's.
				syscall.Sync()
				b.StartTimer()
				op()
			}
			b.ReportMetric(float64(size)/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
		})
	}
	backupTo := filepath.Join(dir, "a.backup")
	copyArgs := map[string]cty.Value{"to": cty.StringVal("bench_b"), "replace": cty.NullVal(cty.Bool)}
	native := filepath.Join(dir, "native.sql")
	run("upshift-backup", func() { os.Remove(backupTo) }, func() { invoke("backup", map[string]cty.Value{"to": cty.StringVal(backupTo)}) })
	run("native-mariadb-dump", func() { os.Remove(native) }, func() {
		shell(fmt.Sprintf("%s --defaults-extra-file=%s --single-transaction bench_a > %s", dumper, cnf, native))
	})
	// As durable as upshift's backup, which syncs its file (coreutils'
	// sync FILE is an fsync of that file).
	run("native-mariadb-dump-fsync", func() { os.Remove(native) }, func() {
		shell(fmt.Sprintf("%s --defaults-extra-file=%s --single-transaction bench_a > %s && sync %s", dumper, cnf, native, native))
	})
	run("upshift-copy", func() { exec1("DROP DATABASE IF EXISTS bench_b") }, func() { invoke("copy", copyArgs) })
	run("native-mariadb-dump-pipe-mariadb", func() { exec1("DROP DATABASE IF EXISTS bench_n"); exec1("CREATE DATABASE bench_n") }, func() {
		shell(fmt.Sprintf("%s --defaults-extra-file=%s --single-transaction bench_a | %s --defaults-extra-file=%s bench_n", dumper, cnf, client, cnf))
	})
	// Backup and copy as the shipped playbook runs them: at once.
	run("upshift-backup+copy", func() { exec1("DROP DATABASE IF EXISTS bench_b"); os.Remove(backupTo) }, func() {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); invoke("backup", map[string]cty.Value{"to": cty.StringVal(backupTo)}) }()
		go func() { defer wg.Done(); invoke("copy", copyArgs) }()
		wg.Wait()
	})
}
