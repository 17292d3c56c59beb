package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// checkCommand is validate, plan and graph: each loads the playbook the same
// way (load, with the pinned plugins when there are any) and differs only in
// what it prints.
func checkCommand(use, short string, write func(w io.Writer, dir string, l *loaded) error) *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := load(cmd, args[0], vf, withContracts, nil)
			if err != nil {
				return err
			}
			defer l.Close()
			return write(cmd.OutOrStdout(), args[0], l)
		},
	}
	vf.register(cmd)
	return cmd
}

func newValidateCommand() *cobra.Command {
	return checkCommand("validate DIR", "Check a playbook: syntax, types, references, action arguments and cycles",
		func(w io.Writer, dir string, l *loaded) error {
			_, err := fmt.Fprintf(w, "The playbook %s is valid: %d steps.\n", dir, len(l.graph.Instances))
			return err
		})
}

func newPlanCommand() *cobra.Command {
	var asJSON bool
	cmd := checkCommand("plan DIR", "Show the steps a run would execute, in order, with their arguments",
		func(w io.Writer, _ string, l *loaded) error {
			if asJSON {
				return l.plan.WriteJSON(w)
			}
			return l.plan.WriteText(w)
		})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func newGraphCommand() *cobra.Command {
	return checkCommand("graph DIR", "Print the step graph in Graphviz DOT (pipe it to dot -Tsvg)",
		func(w io.Writer, _ string, l *loaded) error { return l.graph.WriteDOT(w) })
}
