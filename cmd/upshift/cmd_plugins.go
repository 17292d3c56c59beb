package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/plugins/host"
	"github.com/upshift-dev/upshift/schema"
)

func newPluginsCommand() *cobra.Command {
	root := &cobra.Command{Use: "plugins", Short: "Inspect plugin binaries"}
	var bin, out string
	var skip []string
	docs := &cobra.Command{
		Use:   "docs",
		Short: "Write a reference page for every plugin binary, generated from its schema",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pages, err := pluginDocs(cmd, bin, skip)
			if err != nil {
				return runError(cmd, err)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return runError(cmd, err)
			}
			for name, text := range pages {
				path := filepath.Join(out, name+".md")
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					return runError(cmd, err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), path)
			}
			return nil
		},
	}
	docs.Flags().StringVar(&bin, "bin", "bin", "folder holding upshift-plugin-* binaries")
	docs.Flags().StringVar(&out, "out", "docs/plugins/reference", "folder to write NAME.md into")
	docs.Flags().StringSliceVar(&skip, "skip", []string{"testkit"}, "plugins to leave out")
	root.AddCommand(docs)
	root.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Show the trusted plugin folders and the plugins in them",
		Long: `list shows where upshift finds plugins, in order ($UPSHIFT_PLUGIN_PATH, the
folder of the upshift binary, $XDG_DATA_HOME/upshift/plugins,
~/.upshift/plugins), and each upshift-plugin-* binary there with its
SHA-256, or why it would be refused. Nothing is started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			listPlugins(cmd.OutOrStdout())
			return nil
		},
	})
	return root
}

// listPlugins writes the trusted folders and the plugins each holds.
func listPlugins(w io.Writer) {
	for _, dir := range host.TrustedDirs() {
		paths, _ := filepath.Glob(filepath.Join(dir, host.BinaryPrefix+"*"))
		sort.Strings(paths)
		fmt.Fprintf(w, "%s (%d)\n", dir, len(paths))
		for _, p := range paths {
			name := strings.TrimPrefix(filepath.Base(p), host.BinaryPrefix)
			if err := host.CheckTrusted(p); err != nil {
				fmt.Fprintf(w, "  %-10s refused: %v\n", name, err)
				continue
			}
			sum, err := host.Checksum(p)
			if err != nil {
				fmt.Fprintf(w, "  %-10s %v\n", name, err)
				continue
			}
			fmt.Fprintf(w, "  %-10s sha256:%s\n", name, sum)
		}
	}
}

// pluginDocs starts each plugin binary in bin (checksum computed on the
// spot: these are local builds being documented, not run against a
// cluster), reads its schema and renders it.
func pluginDocs(cmd *cobra.Command, bin string, skip []string) (map[string]string, error) {
	paths, err := filepath.Glob(filepath.Join(bin, host.BinaryPrefix+"*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	defer host.CleanupAll()
	logger := hclog.New(&hclog.LoggerOptions{Output: cmd.ErrOrStderr(), Level: hclog.Warn})
	pages := map[string]string{}
	for _, path := range paths {
		name := strings.TrimPrefix(filepath.Base(path), host.BinaryPrefix)
		if contains(skip, name) {
			continue
		}
		sum, err := host.Checksum(path)
		if err != nil {
			return nil, err
		}
		p, err := host.Launch(cmd.Context(), host.LaunchSpec{Name: name, Path: path, SHA256: sum, Logger: logger})
		if err != nil {
			return nil, err
		}
		sch, err := p.Schema(cmd.Context())
		if err != nil {
			return nil, err
		}
		version := "unknown"
		if inst, ok := p.(*host.Process); ok {
			version = inst.Version()
		}
		pages[name] = schema.Markdown(name, version, sch)
		_ = p.Close()
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("no %s* binaries in %s; run `make build`", host.BinaryPrefix, bin)
	}
	return pages, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
