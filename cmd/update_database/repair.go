package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/plural"
	"hsops/internal/repair"
)

func newRepairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair known corruptions (engine and Synapse databases)",
		Args:  cli.NoArgs,
	}
	var opts repair.Options
	edges := &cobra.Command{
		Use:   "state-group-edges --database-config homeserver.yaml [--dry-run]",
		Short: "Remove duplicate state_group_edges rows that block the state_group_edges_unique_idx update",
		Long: `Restoring a database dump twice duplicates rows of state_group_edges; the
unique index that Synapse v1.60.0 (schema 70) adds can then never be built,
and every later background update of that database waits behind it.

This removes all but the physically first row of each (state_group,
prev_state_group) pair in one transaction, exactly as the v1.60.0 upgrade
notes prescribe (lowest ctid on PostgreSQL, rowid on SQLite), checks before
committing that every distinct pair is still present once, and reports how
many rows went. It works on engine and Synapse databases alike. Stop the
homeserver first: the repair refuses while it can see it running.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			r, err := repair.StateGroupEdges(cmd.Context(), cfg, opts)
			if err != nil {
				return err
			}
			printRepair(g, r, opts.DryRun)
			return nil
		},
	}
	edges.Flags().BoolVar(&opts.DryRun, "dry-run", false, "count and show the duplicates, change nothing")
	edges.Flags().BoolVar(&opts.Force, "force", false, "repair even though the homeserver seems to be running (pid file, the SQLite file open elsewhere, other PostgreSQL sessions)")
	cmd.AddCommand(edges)
	return cmd
}

func printRepair(g *globals, r *repair.EdgesReport, dryRun bool) {
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(r)
		return
	}
	res := r.Result
	if res.Pairs == 0 {
		fmt.Fprintf(g.stdout, "%s: no duplicate state_group_edges rows (%s); nothing to do\n", r.Database, plural.Count(res.Remaining, "row"))
		return
	}
	fmt.Fprintf(g.stdout, "%s: %s, %s\n", r.Database, plural.Count(res.Pairs, "duplicated (state_group, prev_state_group) pair"), plural.Count(res.Removed, "extra row"))
	for _, e := range r.Duplicates {
		fmt.Fprintf(g.stdout, "  state_group %d -> prev_state_group %d: %d copies\n", e.StateGroup, e.PrevStateGroup, e.Count)
	}
	if n := r.More(); n > 0 {
		fmt.Fprintf(g.stdout, "  ... and %d more\n", n)
	}
	if dryRun {
		fmt.Fprintf(g.stdout, "would remove %s, keeping one of each pair; nothing was changed (--dry-run)\n", plural.Count(res.Removed, "row"))
		return
	}
	fmt.Fprintf(g.stdout, "removed %s in one transaction; %s remain, each pair once\n", plural.Count(res.Removed, "row"), plural.Count(res.Remaining, "row"))
	if r.Engine {
		fmt.Fprintf(g.stdout, "next: update_database --database-config %s --run-background-updates\n", g.configArg())
	} else {
		fmt.Fprintln(g.stdout, "next: start Synapse; it builds state_group_edges_unique_idx in the background")
	}
}
