package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/cmd/platformd/platform"
)

// TestBinary builds platformd and drives it as the lab does: serve, SIGTERM
// with a request in flight, migrate (twice), the marker conflict, and the
// exit codes of each.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "platformd")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version=test-1.2.3", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	out, err = exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Equal(t, "platformd test-1.2.3\n", string(out))

	// Node A: version 1 on database a, left running as the old peer.
	addrA := freeAddr(t)
	cfgA := writeConfig(t, dir, "a", map[string]any{
		"name": "node-a", "listen": addrA, "version": "1", "processing": "true",
		"data_dir": filepath.Join(dir, "a-data"), "db.driver": "sqlite", "db.dsn": filepath.Join(dir, "a.sqlite"),
	})
	a := startProc(t, bin, "serve", "--config", cfgA)
	waitHealthy(t, addrA)
	// /healthz and /version name the process that answers.
	var h platform.Health
	getJSON(t, "http://"+addrA+"/healthz", &h)
	assert.Equal(t, a.cmd.Process.Pid, h.Pid)
	assert.Len(t, h.Instance, 32)

	// Node B: version 1 once on database b (initialises schema 1 and its
	// data folder), stopped with SIGTERM.
	addrB := freeAddr(t)
	b1 := map[string]any{
		"name": "node-b", "listen": addrB, "version": "1", "processing": false,
		"data_dir": filepath.Join(dir, "b-data"), "db.driver": "sqlite", "db.dsn": filepath.Join(dir, "b.sqlite"),
		"peers": []string{"http://" + addrA},
	}
	cfgB1 := writeConfig(t, dir, "b1", b1)
	pb := startProc(t, bin, "serve", "--config", cfgB1)
	waitHealthy(t, addrB)
	require.NoError(t, pb.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, pb.wait(t), "SIGTERM is a clean stop: %s", pb.stderr.String())

	// Migrate b to version 2, with the version given as a number; twice is refused.
	b1["version"] = 2
	cfgB2 := writeConfig(t, dir, "b2", b1)
	res := run(t, bin, "migrate", "--check", "--config", cfgB2)
	assert.Equal(t, 1, res.code, "--check before migrate: not migrated: %s", res.stderr)
	assert.Contains(t, res.stderr, "not migrated to version 2: database at schema 1, data folder at version 1")
	res = run(t, bin, "migrate", "--config", cfgB1, "--check")
	assert.Equal(t, 0, res.code, "a version-1 node's data is at its version: %s", res.stderr)
	res = run(t, bin, "migrate", "--config", cfgB2)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "migrated to version 2")
	res = run(t, bin, "migrate", "--check", "--config", cfgB2)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, "migrated to version 2\n", res.stdout)
	res = run(t, bin, "migrate", "--check", "--config", cfgB1)
	assert.Equal(t, platform.ExitVersionMismatch, res.code, "version 1 on schema 2: migrate would refuse")
	// Cannot tell is neither 0 nor 1.
	unreachable := maps.Clone(b1)
	unreachable["db.dsn"] = filepath.Join(dir, "no-such-folder", "b.sqlite")
	res = run(t, bin, "migrate", "--check", "--config", writeConfig(t, dir, "b-unreachable", unreachable))
	assert.Equal(t, platform.ExitCheckUnknown, res.code, res.stderr)
	res = run(t, bin, "migrate", "--check")
	assert.Equal(t, platform.ExitConfig, res.code, res.stderr)
	res = run(t, bin, "migrate", "--config", cfgB2)
	assert.Equal(t, platform.ExitAlreadyMigrated, res.code)
	assert.Contains(t, res.stderr, "already migrated to version 2")

	// Version 2 next to version-1 node A without the marker: refused.
	res = run(t, bin, "serve", "--config", cfgB2)
	assert.Equal(t, platform.ExitConflict, res.code)
	assert.Contains(t, res.stderr, "conflict: peers http://"+addrA+" still run version 1; create "+
		filepath.Join(dir, "b-data", "rolling-upgrade")+" to run alongside them")

	// With the marker it starts; SIGINT stops it cleanly too.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b-data", "rolling-upgrade"), nil, 0o644))
	pb2 := startProc(t, bin, "serve", "--config", cfgB2)
	waitHealthy(t, addrB)
	require.NoError(t, pb2.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 0, pb2.wait(t), pb2.stderr.String())

	// Version 1 on the migrated database: refused.
	b1["version"] = "1"
	b1["data_dir"] = filepath.Join(dir, "b-fresh")
	res = run(t, bin, "serve", "--config", writeConfig(t, dir, "b3", b1))
	assert.Equal(t, platform.ExitVersionMismatch, res.code)
	assert.Contains(t, res.stderr, "database is at schema 2, this node runs version 1")

	// SIGTERM on A with a slow request in flight: the request still succeeds.
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addrA + "/slow?ms=800")
		if err != nil {
			got <- -1
			return
		}
		_ = resp.Body.Close()
		got <- resp.StatusCode
	}()
	time.Sleep(250 * time.Millisecond)
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, http.StatusOK, <-got)
	assert.Equal(t, 0, a.wait(t), a.stderr.String())

	// Usage errors.
	res = run(t, bin, "serve")
	assert.Equal(t, platform.ExitConfig, res.code)
	assert.Contains(t, res.stderr, "--config FILE is required")
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan int
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &bytes.Buffer{}, done: make(chan int, 1)}
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.done <- exitCode(p.cmd.Wait()) }()
	t.Cleanup(func() {
		select {
		case c := <-p.done:
			p.done <- c
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case c := <-p.done:
		p.done <- c
		return c
	case <-time.After(15 * time.Second):
		t.Fatalf("process did not exit within 15s: %s", p.stderr.String())
		return -1
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return result{exitCode(cmd.Run()), stdout.String(), stderr.String()}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

func writeConfig(t *testing.T, dir, name string, cfg map[string]any) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	p := filepath.Join(dir, name+".json")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not healthy within 15s", addr)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return strings.TrimSpace(addr)
}
