package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/gen"
)

func newGenerateCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		configs []string
		p       gen.Params
		version int
	)
	cmd := &cobra.Command{
		Use:   "generate --database-config homeserver.yaml [--users N --rooms N --messages N]",
		Short: "Fill an empty engine database directly, fast, with the rows the client API writes",
		Long: `generate creates the engine's schema in the database of the config (or uses
the one there) and fills it with users, rooms, their state, messages,
threads, reactions, receipts and backfilled events, written by the engine's
own store in large batches. A database that already holds events is refused
before anything is written. --schema-version creates an older schema and
writes only what that version has.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case len(configs) == 0:
				return cli.Usagef("--database-config is required")
			case p.Users < 1 || p.Rooms < 1:
				return cli.Usagef("--users and --rooms must be at least 1")
			case p.Messages < 0 || p.Backfilled < 0:
				return cli.Usagef("--messages and --backfilled cannot be negative")
			}
			if oldest, newest := gen.SchemaVersions(); version != 0 && (version < oldest || version > newest) {
				return cli.Usagef("--schema-version %d: choose one from %d to %d", version, oldest, newest)
			}
			cfg, err := config.Load(configs...)
			if err != nil {
				return err
			}
			dbc, err := cfg.MainDatabase()
			if err != nil {
				return err
			}
			if cfg.ServerName != "" {
				p.ServerName = cfg.ServerName
			}
			var progress func(int)
			if cli.IsTerminal(stdout) {
				progress = func(n int) { fmt.Fprintf(stdout, "\r%d events", n) }
			}
			t0 := time.Now()
			stats, err := generate(ctx, dbc, p, version, progress)
			took := time.Since(t0)
			if progress != nil {
				fmt.Fprintln(stdout)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "generated %d users, %d rooms, %d events, %d state groups, %d search rows at schema %d: %d rows in %s (%.0f rows/s)\n",
				stats.Users, stats.Rooms, stats.Events, stats.StateGroups, stats.SearchRows, stats.SchemaVersion, stats.Rows,
				took.Round(time.Millisecond), float64(stats.Rows)/took.Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&configs, "database-config", "c", nil, "homeserver config of the database to fill")
	f.IntVar(&p.Users, "users", 100, "users")
	f.IntVar(&p.Rooms, "rooms", 20, "rooms")
	f.IntVar(&p.Messages, "messages", 10000, "messages, spread over the rooms")
	f.IntVar(&p.MembersPerRoom, "members", 10, "members per room")
	f.IntVar(&p.Backfilled, "backfilled", 5, "backfilled events per room (negative stream orderings)")
	f.Int64Var(&p.Seed, "seed", 1, "random seed")
	f.IntVar(&version, "schema-version", 0, "create the database at this older schema version (from 68) and write only what it has")
	return cmd
}

// generate fills the database, 20,000 events per transaction; progress,
// when set, is called after each.
func generate(ctx context.Context, dbc config.Database, p gen.Params, version int, progress func(int)) (gen.Stats, error) {
	p.TxSize = 20000
	p.Progress = progress
	return gen.Fill(ctx, dbc, version, p)
}
