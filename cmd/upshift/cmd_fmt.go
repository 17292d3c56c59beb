package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/spf13/cobra"
)

func newFmtCommand() *cobra.Command {
	var check, recursive, skipInvalid bool
	cmd := &cobra.Command{
		Use:   "fmt [PATH...]",
		Short: "Rewrite playbook files in the canonical HCL style",
		Long: `fmt rewrites .hcl files in the canonical style, as terraform fmt does. With
no path it formats the current folder. A file with syntax errors is reported
and left untouched.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			var files []string
			for _, a := range args {
				found, err := hclFiles(a, recursive)
				if err != nil {
					return err
				}
				files = append(files, found...)
			}
			changed, invalid := 0, false
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				if _, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos); diags.HasErrors() {
					if skipInvalid {
						fmt.Fprintf(cmd.ErrOrStderr(), "skipped %s: it does not parse (%s)\n", f, diags[0].Summary)
						continue
					}
					printDiagnostics(cmd.ErrOrStderr(), nil, diags)
					invalid = true
					continue
				}
				out := hclwrite.Format(src)
				if bytes.Equal(src, out) {
					continue
				}
				changed++
				fmt.Fprintln(cmd.OutOrStdout(), f)
				if !check {
					if err := os.WriteFile(f, out, 0o644); err != nil {
						return err
					}
				}
			}
			if invalid || (check && changed > 0) {
				return exitError{exitInvalid}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "list files that need formatting and exit 1 if any, without changing them")
	cmd.Flags().BoolVar(&recursive, "recursive", false, "also format subfolders")
	cmd.Flags().BoolVar(&skipInvalid, "skip-invalid", false, "leave files that do not parse alone, naming each, instead of failing (for trees that keep broken playbooks on purpose, such as test fixtures)")
	return cmd
}

func hclFiles(path string, recursive bool) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var out []string
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".hcl") {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}
