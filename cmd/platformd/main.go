// Command platformd is the reference platform that upshift upgrades in its
// demo and end-to-end tests: one node of a small clustered HTTP service, in
// version 1 or 2. The logic lives in package platform; this file is the CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/cmd/platformd/platform"
)

// version is the build version, set with -ldflags "-X main.version=...".
var version = ""

func main() {
	err := newRootCmd().Execute()
	if err != nil {
		fmt.Fprintln(os.Stderr, "platformd:", err)
	}
	os.Exit(processExit(err))
}

// checkError is the outcome of `migrate --check`, whose exit codes differ
// (platform.CheckExitCode): 1 there means "not migrated", not a failure.
type checkError struct{ error }

func (e checkError) Unwrap() error { return e.error }

func processExit(err error) int {
	var ce checkError
	if errors.As(err, &ce) {
		return platform.CheckExitCode(ce.error)
	}
	return platform.ExitCode(err)
}

func newRootCmd() *cobra.Command {
	var configPath, logLevel string
	root := &cobra.Command{
		Use:           "platformd",
		Short:         "Reference platform node upgraded by upshift (version 1 or 2)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configPath, "config", "", "the node's config file, a flat JSON object: name, listen, version (\"1\" or \"2\"), data_dir, db.driver\n"+
		"(sqlite, postgres, mysql), db.dsn, and processing (true on one node) and peers (the other nodes'\n"+
		"URLs; without them a version-2 node starts beside version-1 peers unchecked); see docs/platformd.md")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")

	load := func() (*platform.Config, *slog.Logger, error) {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return nil, nil, fmt.Errorf("%w: --log-level: %v", platform.ErrConfig, err)
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
		if configPath == "" {
			return nil, nil, fmt.Errorf("%w: --config FILE is required", platform.ErrConfig)
		}
		cfg, err := platform.LoadConfig(configPath)
		return cfg, logger, err
	}

	serve := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the node until SIGTERM or SIGINT, then shut down gracefully",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := load()
			if err != nil {
				return err
			}
			srv, err := platform.NewServer(cfg, logger)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return srv.Run(ctx)
		},
	}

	var check bool
	migrate := &cobra.Command{
		Use:   "migrate --config FILE [--check]",
		Short: "Migrate the config's database and data folder to the config's version",
		Long: "Migrate the config's database and data folder to the config's version.\n\n" +
			"With --check nothing changes: exit 0 when both are at the config's version, 1 when migrate\n" +
			"has something to do, 5 when migrate would refuse, 6 when it cannot tell (database unreachable).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := load()
			if err != nil {
				if check {
					return checkError{err}
				}
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if check {
				st, err := platform.CheckMigrated(ctx, cfg)
				if err != nil {
					return checkError{err}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "migrated to version %d\n", st.Target)
				return nil
			}
			res, err := platform.Migrate(ctx, cfg)
			if err != nil {
				return err
			}
			logger.Info("migrated", "from", res.From, "to", res.To, "database", res.Database,
				"data_dir", res.DataDir, "items_updated", res.ItemsUpdated)
			fmt.Fprintf(cmd.OutOrStdout(), "migrated to version %d\n", res.To)
			return nil
		},
	}

	migrate.Flags().BoolVar(&check, "check", false, "change nothing; exit 0 when migrated to the config's version, 1 when not")

	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "platformd %s\n", buildVersion())
		},
	}

	root.AddCommand(serve, migrate, ver)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v", platform.ErrConfig, err)
	})
	root.SetContext(context.Background())
	return root
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
