package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/plugins/host"
)

func newValidateCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "validate DIR",
		Short: "Check a playbook: syntax, types, references, action arguments and cycles",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer host.CleanupAll()
			l, err := load(cmd, args[0], vf, withContracts, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "The playbook %s is valid: %d steps.\n", args[0], len(l.graph.Instances))
			return nil
		},
	}
	vf.register(cmd)
	return cmd
}

func newPlanCommand() *cobra.Command {
	var vf varFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan DIR",
		Short: "Show the steps a run would execute, in order, with their arguments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer host.CleanupAll()
			l, err := load(cmd, args[0], vf, withContracts, nil)
			if err != nil {
				return err
			}
			if asJSON {
				return l.plan.WriteJSON(cmd.OutOrStdout())
			}
			return l.plan.WriteText(cmd.OutOrStdout())
		},
	}
	vf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func newGraphCommand() *cobra.Command {
	var vf varFlags
	cmd := &cobra.Command{
		Use:   "graph DIR",
		Short: "Print the step graph in Graphviz DOT (pipe it to dot -Tsvg)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer host.CleanupAll()
			l, err := load(cmd, args[0], vf, withContracts, nil)
			if err != nil {
				return err
			}
			return l.graph.WriteDOT(cmd.OutOrStdout())
		},
	}
	vf.register(cmd)
	return cmd
}
