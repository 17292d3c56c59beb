package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/process/localnode"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/plugins/sdk/nodekit"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
	"github.com/upshift-dev/upshift/schema"
)

// Version of the process plugin.
const Version = "0.1.0"

var configSchema = &schema.Object{Attributes: []*schema.Attribute{
	{Name: "read_only_path", Type: cty.String, Description: "Path of the platform's read-only admin endpoint, used for nodes without read_only_url. Default /admin/read-only."},
	{Name: "start_timeout", Type: cty.String, Description: "Default deadline for a node to listen after start. Default 30s."},
	{Name: "stop_timeout", Type: cty.String, Description: "Default grace period between SIGTERM and SIGKILL. Default 30s."},
	{Name: "backup_root", Type: cty.String, Description: "Folder every backup_data `to` must be inside. Unset: any folder but /, the data folder and what holds it, and an existing one is replaced only when it is a backup upshift made."},
}}

// config is configSchema decoded.
type config struct {
	ReadOnlyPath string        `cty:"read_only_path" default:"/admin/read-only"`
	StartTimeout time.Duration `cty:"start_timeout,positive" default:"30s"`
	StopTimeout  time.Duration `cty:"stop_timeout,positive" default:"30s"`
	BackupRoot   string        `cty:"backup_root"`
}

func newPlugin() *sdk.Plugin {
	kit := nodekit.New[*localnode.Node]("process", driver{})
	return &sdk.Plugin{
		Name: "process", Version: Version, Kind: schema.KindNodePool, Config: configSchema,
		Node:      nodekit.NodeSchema(),
		Configure: func(_ context.Context, req plugins.ConfigureRequest) error { return configure(kit, req) },
		Actions:   kit.Actions(),
	}
}

func configure(kit *nodekit.Kit[*localnode.Node], req plugins.ConfigureRequest) error {
	var cfg config
	if err := sdk.Decode(req.Config, &cfg); err != nil {
		return err
	}
	nodes := req.Nodes
	if nodes.IsNull() || !(nodes.Type().IsListType() || nodes.Type().IsTupleType()) {
		return fmt.Errorf("a process node pool needs a list of nodes")
	}
	var list []*localnode.Node
	for it := nodes.ElementIterator(); it.Next(); {
		_, v := it.Element()
		n, err := nodekit.FromValue(v, cfg.ReadOnlyPath)
		if err != nil {
			return err
		}
		for _, p := range []string{n.ConfigFile, n.DataDir, n.PidFile, n.LogFile} {
			if !filepath.IsAbs(p) {
				return fmt.Errorf("node %q: path %q must be absolute", n.Name, p)
			}
		}
		list = append(list, &localnode.Node{Node: *n, BackupRoot: cfg.BackupRoot})
	}
	return kit.SetNodes(list, cfg.StartTimeout, cfg.StopTimeout)
}

// driver runs the standard actions on local processes (localnode).
type driver struct{}

var (
	_ nodekit.Driver[*localnode.Node]         = driver{}
	_ nodekit.RunningChecker[*localnode.Node] = driver{}
)

func (driver) Start(ctx context.Context, n *localnode.Node, timeout time.Duration, progress nodekit.Progress) error {
	started, err := n.Start(ctx, timeout, progress)
	if err == nil && !started {
		progress("already running")
	}
	return err
}

func (driver) Stop(ctx context.Context, n *localnode.Node, timeout time.Duration, progress nodekit.Progress) error {
	stopped, err := n.Stop(ctx, timeout, progress)
	if err == nil && !stopped {
		progress("already stopped")
	}
	return err
}

func (driver) Running(_ context.Context, n *localnode.Node) (bool, error) { return n.Running(), nil }

func (driver) Exec(ctx context.Context, n *localnode.Node, cmd nodekit.Command, timeout time.Duration) (nodekit.ExecResult, error) {
	res, err := n.Exec(ctx, cmd.Argv, cmd.Shell, cmd.Env, timeout)
	if err != nil {
		if msg := procfs.HideValues(err.Error(), cmd.Env); msg != err.Error() {
			err = errors.New(msg)
		}
	}
	return res, err
}

func (driver) SetConfig(_ context.Context, n *localnode.Node, key, value string) (bool, error) {
	return n.SetConfig(key, value)
}

func (driver) Touch(_ context.Context, n *localnode.Node, p string) error { return n.Touch(p) }

func (driver) BackupData(_ context.Context, n *localnode.Node, to string) (int64, error) {
	return n.BackupData(to)
}
