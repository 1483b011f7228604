package main

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/load"
	"hsops/internal/pgcluster"
)

func newBenchSwitchCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var o load.BenchSwitchOptions
	cmd := &cobra.Command{
		Use:   "bench-switch [--events 1000000] [--clients 16] [--postgres-url URL] [--work DIR]",
		Short: "Measure port_db --switch-config: the downtime and the rows of the final port, under load",
		Long: `bench-switch generates (or reuses, in --work, or --source) an engine SQLite
database with the given number of messages, starts the homeserver on a copy of
it, has --clients clients register, join their rooms and send messages
through the client API, begins the switch once they send (so that they send
during the whole pre-copy), stops them when the switch stops the homeserver,
and reports the switch's phases, the rows its final port moved and where its
time went, the downtime measured (from the stop to the homeserver healthy on
PostgreSQL), the messages sent meanwhile and the load average; then, for
reference, what a count(*) of the tables the final port moved rows into
costs on each side.

--postgres-url is a role that may create databases; without it a throwaway
cluster is started from the initdb and pg_ctl on the machine.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return load.BenchSwitch(ctx, stdout, o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 1000000, "messages in the generated database")
	f.IntVar(&o.Clients, "clients", 16, "clients sending messages during the pre-copy")
	f.IntVar(&o.Jobs, "jobs", 2, "port_db --jobs")
	f.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "hsops-bench-switch"), "directory for the generated database (reused across runs) and the run")
	f.StringVar(&o.Source, "source", "", "an engine SQLite database to start from (default: generated in --work)")
	f.StringVar(&o.PGURL, "postgres-url", os.Getenv(pgcluster.EnvURL), "PostgreSQL admin URL")
	f.StringVar(&o.Homeserver, "homeserver", "", "the homeserver binary (default: next to hsload, then PATH)")
	f.StringVar(&o.Verify, "verify", "full", "port_db --switch-verify: full, counts or whole")
	f.BoolVar(&o.JSON, "json", false, "print the result as JSON")
	return cmd
}
