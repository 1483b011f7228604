package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/status"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status --database-config homeserver.yaml [--json]",
		Short: "Show where a database stands: owner, schema and compat versions, matching releases, pending work",
		Long: `status reads a database's bookkeeping and changes nothing. It works on
databases created by the hsops engine and on Synapse's own databases. When it
reports a problem (a missing SQLite file, a database newer than hsops knows)
it exits with that problem's code.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			all, err := status.Of(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			var problem error
			for i, s := range all {
				if problem == nil {
					problem = s.Err()
				}
				if g.json {
					cli.NewJSONLines(g.stdout).Emit(s)
					continue
				}
				if i > 0 {
					fmt.Fprintln(g.stdout)
				}
				s.Format(g.stdout, g.configArg())
			}
			// A problem reported is the run's outcome: its class is the
			// exit code.
			return problem
		},
	}
}
