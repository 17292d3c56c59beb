package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/internal/doctest"
)

// TestDocsCommands parses every `upshift ...` command line of README.md
// and docs/ with the CLI's own parser (normalizeArgs, then cobra's command
// lookup and flag parsing), without running anything: a renamed flag or
// command, or a wrong number of arguments, fails here instead of in a
// reader's terminal. Lines of shell (or untagged) code blocks are checked
// whole; commands quoted inline in the text (`upshift plan`) often leave
// out their arguments, so only their command and flags are checked, and an
// inline span whose second word is not a command (`upshift copy of <A>`,
// a database comment) is not a command line at all. See package
// internal/doctest.
func TestDocsCommands(t *testing.T) {
	files, err := doctest.DocFiles("../..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		cmds, err := doctest.Commands(file)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, c := range cmds {
			pos := strings.TrimPrefix(c.Pos, "../../")
			checked, err := checkDocCommand(c)
			if err != nil {
				t.Errorf("%s: `%s`: %v", pos, c.Text, err)
			}
			if checked {
				n++
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d upshift command lines found in the docs: is the extraction broken?", n)
	}
	t.Logf("%d upshift command lines parsed", n)
}

// checkDocCommand parses one command line as run would, up to the point
// where the command would start. false: not a command line (an inline span
// whose first word is not a command).
func checkDocCommand(c doctest.Command) (bool, error) {
	root := newRootCommand(io.Discard, io.Discard)
	args := normalizeArgs(c.Args)
	if len(args) == 0 {
		return true, nil // "upshift" alone
	}
	if c.Inline && !strings.HasPrefix(args[0], "-") && !isCommand(root, args[0]) {
		return false, nil
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return true, err
	}
	cmd.InitDefaultHelpFlag()
	cmd.InitDefaultVersionFlag()
	if err := cmd.ParseFlags(rest); err != nil {
		return true, err
	}
	if c.Inline {
		return true, nil
	}
	if cmd.Runnable() {
		return true, cmd.ValidateArgs(cmd.Flags().Args())
	}
	if len(cmd.Flags().Args()) > 0 {
		return true, cmd.ValidateArgs(cmd.Flags().Args())
	}
	return true, nil
}

func isCommand(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return true
		}
	}
	return false
}
