// Command hsload makes load for the homeserver and its tools: it fills
// databases directly (generate), drives a running homeserver through its
// HTTP API (http), and measures port_db against a raw PostgreSQL COPY of the
// same rows (bench-port).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/gen"
	"hsops/schema"
	"hsops/schema/engine"
)

// tool is hsload's exit table: every failure of a run is "failed".
var tool = cli.Tool{
	Name: "hsload",
	OK:   "done",
	Exits: []cli.Exit{
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error"},
		{Class: fault.Failed, Meaning: "the run failed (see the error)"},
		{Class: fault.Interrupted, Meaning: "interrupted"},
	},
	Unclassified: fault.Failed,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(tool, newRootCmd(ctx, stdout, stderr), args, stdout, stderr)
}

func newRootCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "hsload generate|http|check|bench-port",
		Short: "Load generators and benchmarks for the homeserver and its tools",
		Long:  tool.ExitHelp(),
		Args:  cli.NoArgs,
	}
	root.AddCommand(newGenerateCmd(ctx, stdout), newHTTPCmd(ctx, stdout), newCheckCmd(ctx, stdout), newBenchPortCmd(ctx, stdout, stderr))
	return root
}

func newGenerateCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		configs []string
		p       gen.Params
		version int
	)
	cmd := &cobra.Command{
		Use:   "generate --database-config homeserver.yaml [--users N --rooms N --messages N]",
		Short: "Fill an empty engine database directly, fast, with the shapes the client API writes",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(configs) == 0 {
				return cli.Usagef("--database-config is required")
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
			t0 := time.Now()
			stats, err := generate(ctx, dbc, p, version, func(n int) {
				fmt.Fprintf(stdout, "\r%d events", n)
			})
			fmt.Fprintln(stdout)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "generated %d users, %d rooms, %d events, %d state groups, %d search rows in %s\n",
				stats.Users, stats.Rooms, stats.Events, stats.StateGroups, stats.SearchRows, time.Since(t0).Round(time.Millisecond))
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
	f.IntVar(&version, "schema-version", 0, "create the database at this older schema version (68-82) and write only what it has")
	return cmd
}

// generate creates the schema if needed and fills the database.
func generate(ctx context.Context, dbc config.Database, p gen.Params, version int, progress func(int)) (gen.Stats, error) {
	d, err := db.Open(ctx, dbc, db.Options{Create: true, AppName: "hsops hsload"})
	if err != nil {
		return gen.Stats{}, err
	}
	defer d.Close()
	// Refuse a database with events before anything is written (the
	// schema step would upgrade it).
	if ok, err := d.TableExists(ctx, d, "events"); err != nil {
		return gen.Stats{}, err
	} else if ok {
		var n int
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
			return gen.Stats{}, err
		}
		if n > 0 {
			return gen.Stats{}, fmt.Errorf("the database already has %d events: generate into an empty one", n)
		}
	}
	p.Older = version != 0 && version < engine.Schema().Version
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: version, ServerName: p.ServerName, AllowUnsafeLocale: dbc.AllowUnsafeLocale, Holder: "hsload generate"}); err != nil {
		return gen.Stats{}, err
	}
	p.Progress = progress
	p.TxSize = 20000
	return gen.Generate(ctx, d, p)
}
