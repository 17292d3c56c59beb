package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/runner/termtext"
	"github.com/upshift-dev/upshift/schema"
)

// errClusterLocked is a database lock held by another run: exit 6.
var errClusterLocked = errors.New("the cluster is locked by another run")

// heldLock is a database lock this run took.
type heldLock struct {
	addr string
	p    plugins.Provider
}

// lockCluster takes the standard lock of every database the playbook uses
// (in address order) before anything changes: the lock lives in the
// cluster, so a second run from another checkout, state folder or machine
// is refused, naming the holder. It is held by the database plugin's
// process, so a crashed run frees it with its plugins. The returned
// function releases what was taken; call it before the plugins end.
func lockCluster(ctx context.Context, l *loaded, holder string) (func(), error) {
	var held []heldLock
	release := func() {
		// Not the run's context: it may be cancelled, and the locks must
		// still be given back (the plugins' death would free them anyway).
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := len(held) - 1; i >= 0; i-- {
			_ = invoke(rctx, held[i].p, held[i].addr, "unlock", nil)
		}
	}
	providers := l.plugins.Providers()
	for _, addr := range l.pb.ResourceNames() {
		r := l.pb.Resources[addr]
		if r.Kind != schema.KindDatabase || r.Schema == nil || r.Schema.Action("lock") == nil {
			continue
		}
		p := providers[addr]
		if p == nil {
			continue
		}
		if err := invoke(ctx, p, addr, "lock", map[string]cty.Value{"holder": cty.StringVal(holder)}); err != nil {
			release()
			if strings.Contains(err.Error(), " is held by ") {
				return nil, fmt.Errorf("%w: %s", errClusterLocked, err)
			}
			return nil, fmt.Errorf("taking the cluster's lock in %s: %w", addr, err)
		}
		held = append(held, heldLock{addr, p})
	}
	return release, nil
}

// invoke calls a standard action of a resource with the given arguments,
// the others null.
func invoke(ctx context.Context, p plugins.Provider, addr, action string, args map[string]cty.Value) error {
	sch, err := p.Schema(ctx)
	if err != nil {
		return err
	}
	a := sch.Action(action)
	if a == nil {
		return fmt.Errorf("%s has no %s action", addr, action)
	}
	full := map[string]cty.Value{}
	for _, attr := range a.Args.Attributes {
		full[attr.Name] = cty.NullVal(attr.Type)
	}
	for k, v := range args {
		full[k] = v
	}
	var v cty.Value = cty.EmptyObjectVal
	if len(full) > 0 {
		v = cty.ObjectVal(full)
	}
	resp := p.Invoke(ctx, plugins.InvokeRequest{Action: action, Args: v})
	if resp.Diagnostics.HasErrors() {
		return resp.Diagnostics.Err()
	}
	return nil
}

// lockHolder says who holds the cluster, for a run that finds it locked:
// user@host, pid and start time, short enough for every engine to keep
// (PostgreSQL keeps 63 bytes of it).
func lockHolder(o journal.Owner) string {
	h := fmt.Sprintf("upshift pid %d %s@%s %s", o.PID, o.User, o.Host, o.Since.UTC().Format("15:04:05Z"))
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// clusterLockError prints err: a lock another run holds has its own code,
// and says nothing changed.
func clusterLockError(cmd *cobra.Command, err error) error {
	if errors.Is(err, errClusterLocked) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\nNothing was changed.\n", termtext.Block(err.Error()))
		return exitError{exitLocked}
	}
	return failed(cmd, err)
}
