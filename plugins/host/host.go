// Package host owns the host side of plugins: finding a plugin binary
// in the trusted plugin folders only (TrustedDirs, Find, CheckTrusted),
// pinning it by name, version and checksum in upshift.lock.hcl (Checksum,
// LockFile, Init), launching a verified private copy of it with go-plugin,
// AutoMTLS and a minimal environment (Launch, PluginEnv),
// and ending every plugin process (Process.Close, CleanupAll). The
// *Process it returns is a plugins.Provider over gRPC. A Session owns the
// plugins of one command: one instance per resource of a playbook, their
// versions and schemas, their configuration, and their end.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// LaunchSpec says which binary to start for a plugin and what it must hash
// to.
type LaunchSpec struct {
	// Name is the plugin's name in the playbook ("haproxy"), used in
	// messages and as the logger's name.
	Name string
	// Path of the binary, usually from the lock file.
	Path string
	// SHA256 is the binary's expected SHA-256, hex as in the lock file.
	// Required: an unpinned binary is not started.
	SHA256 string
	// Logger receives go-plugin's messages and the plugin's own log lines
	// and stderr. Nil uses hclog's default logger.
	Logger hclog.Logger
}

// Process is one running plugin process and the plugins.Provider that
// calls it. Launch one per plugin instance per run and reuse it; calls may
// be concurrent.
type Process struct {
	*sdk.GRPCProvider
	name   string
	path   string
	client *plugin.Client
	info   *sdk.Info
	// ended is closed once the plugin process is gone; the thread that
	// forked it is held until then (see onForkThread).
	ended chan struct{}

	closeOnce sync.Once
}

var _ plugins.Provider = (*Process)(nil)

// Launch starts the plugin binary spec.Path under go-plugin: the upshift
// handshake, gRPC only, AutoMTLS, and Managed so CleanupAll ends it. The
// binary and its folders must pass CheckTrusted; it is copied into a
// private folder while its bytes are hashed, and the copy, verified
// against spec.SHA256, is what starts (a binary swapped at the path in the
// meantime is never run). The process gets only PluginEnv of upshift's
// environment. It fetches
// the plugin's schema before returning, so a binary that is not a valid
// upshift plugin fails here. The returned provider is a *Process.
func Launch(ctx context.Context, spec LaunchSpec) (plugins.Provider, error) {
	inst, err := launch(ctx, spec)
	if err != nil {
		return nil, err
	}
	return inst, nil
}

func launch(ctx context.Context, spec LaunchSpec) (*Process, error) {
	if spec.Name == "" {
		return nil, errors.New("launching a plugin: no name")
	}
	sum, err := hex.DecodeString(spec.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("plugin %s: no valid sha256 for %s in %s; run `upshift init`", spec.Name, spec.Path, LockFileName)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", spec.Name, err)
	}
	if _, err := os.Stat(spec.Path); err != nil {
		return nil, fmt.Errorf("plugin %s: binary %s: %w; run `upshift init` to find it again", spec.Name, spec.Path, err)
	}
	logger := spec.Logger
	if logger == nil {
		logger = hclog.L()
	}
	// Hashed and started from one private copy: see copyVerified.
	cp, err := copyVerified(spec.Path, sum)
	if err != nil {
		if errors.Is(err, ErrChecksumMismatch) {
			return nil, &mismatchError{fmt.Sprintf("plugin %s: binary %s does not match the checksum in %s; run `upshift init` if you upgraded it on purpose", spec.Name, spec.Path, LockFileName)}
		}
		return nil, fmt.Errorf("plugin %s: %w", spec.Name, err)
	}
	// The process is started by the time Client returns, and holds the
	// copy's file: its name is no longer needed.
	defer cp.remove()
	cmd := exec.Command(cp.path)
	cmd.Args[0] = spec.Path // what ps and /proc/PID/cmdline show
	cmd.Env = PluginEnv(os.Environ())
	dieWithUs(cmd)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap(nil),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		Logger:           logger.Named(spec.Name),
	})
	ended := make(chan struct{})
	kill := func() {
		client.Kill()
		close(ended)
	}
	// go-plugin forks in Start, which Client calls, on the calling
	// goroutine's thread.
	var rpc plugin.ClientProtocol
	err = onForkThread(func() (err error) { rpc, err = client.Client(); return err }, ended)
	if err != nil {
		kill()
		return nil, fmt.Errorf("plugin %s: starting %s: %w", spec.Name, spec.Path, err)
	}
	raw, err := rpc.Dispense(sdk.DispenseName)
	if err != nil {
		kill()
		return nil, fmt.Errorf("plugin %s: %w", spec.Name, err)
	}
	inst := &Process{GRPCProvider: raw.(*sdk.GRPCProvider), name: spec.Name, path: spec.Path, client: client, ended: ended}
	inst.GRPCProvider.Explain = inst.explain
	info, err := inst.GRPCProvider.Info(ctx)
	if err != nil {
		inst.closeOnce.Do(kill)
		return nil, fmt.Errorf("plugin %s (%s): %w", spec.Name, spec.Path, err)
	}
	inst.info = info
	if info.Name != spec.Name {
		logger.Debug("plugin calls itself by another name", "plugin", spec.Name, "declared", info.Name)
	}
	return inst, nil
}

// mismatchError is a binary that does not hash to its pinned checksum; it
// wraps ErrChecksumMismatch.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }
func (e *mismatchError) Unwrap() error { return ErrChecksumMismatch }

// explain turns a broken connection into "the plugin process died": the
// socket closes a moment before go-plugin notices the exit, so it waits a
// little for that.
func (i *Process) explain(_ context.Context, call string, err error) error {
	deadline := time.Now().Add(300 * time.Millisecond)
	for !i.client.Exited() {
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("plugin %s (pid %d, %s) exited during %s; see its log lines above", i.name, i.Pid(), i.path, call)
}

// Name is the plugin's name in the playbook.
func (i *Process) Name() string { return i.name }

// Version is the version the plugin declares.
func (i *Process) Version() string { return i.info.Version }

// Kind is the plugin's kind.
func (i *Process) Kind() schema.Kind { return i.info.Schema.Kind }

// Pid is the plugin process's id.
func (i *Process) Pid() int {
	if rc := i.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Exited reports whether the plugin process has ended.
func (i *Process) Exited() bool { return i.client.Exited() }

// Close ends the plugin process: gracefully, then by force after two
// seconds. Safe to call more than once.
func (i *Process) Close() error {
	i.closeOnce.Do(func() {
		i.client.Kill()
		close(i.ended)
	})
	return nil
}

// onForkThread runs start, which forks a plugin, on a goroutine locked to
// its OS thread, and keeps that goroutine (and so the thread) until ended
// is closed when start succeeded.
//
// Linux sends the parent-death signal when the *thread* that forked the
// child ends, not the process. The Go runtime ends a thread only when a
// goroutine locked to it exits without unlocking: any goroutine of this
// process (ours, a library's) could do that on whatever thread it happened
// to run on, the one that forked a plugin included, and the plugin would be
// killed in the middle of a run. A locked thread runs no other goroutine,
// so holding the lock for the plugin's lifetime means the signal fires
// only when upshift itself dies; after the plugin has ended the thread is
// unlocked and returns to the pool.
func onForkThread(start func() error, ended <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := start()
		errc <- err
		if err == nil {
			<-ended
		}
	}()
	return <-errc
}

// CleanupAll ends every plugin process this process launched. For the CLI's
// signal handler and deferred cleanup in main.
func CleanupAll() { plugin.CleanupClients() }

// BinaryPrefix starts every plugin binary's name.
const BinaryPrefix = "upshift-plugin-"

// BinaryName is the file name of plugin name's binary.
func BinaryName(name string) string { return BinaryPrefix + name }

// validName keeps plugin names usable in file names and messages.
func validName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\ `) || name == "." || name == ".." {
		return fmt.Errorf("invalid plugin name %q", name)
	}
	return nil
}
