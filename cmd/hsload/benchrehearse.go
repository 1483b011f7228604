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

func newBenchRehearseCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	var o load.BenchRehearseOptions
	cmd := &cobra.Command{
		Use:   "bench-rehearse [--events 1000000] [--schema-version 69] [--engine sqlite|postgres|both] [--postgres-url URL] [--work DIR]",
		Short: "Measure update_database rehearse on a generated database against a plain copy and the real upgrade",
		Long: `bench-rehearse generates (or reuses, in --work) an engine database at an older
schema version with the given number of messages, then, in the same run:

  - copies it the plain way, the reference: the file with its fsync (SQLite),
    CREATE DATABASE ... TEMPLATE (PostgreSQL);
  - rehearses the upgrade with the update_database binary (next to hsload, or
    on PATH): its copy time against the reference (the ratio), its predicted
    downtime and background time (PostgreSQL: the template copy and, with
    --snapshot-copy, the copy made from a snapshot while others are connected);
  - runs the real upgrade on a plain copy with the same binary, timed: its
    schema phase (update_database) and its background updates (background run).

--postgres-url is a role that may create databases; without it a throwaway
cluster is started from the initdb and pg_ctl on the machine.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := findBinary("update_database", o.UpdateDatabase)
			if err != nil {
				return cli.Usagef("update_database not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --update-database")
			}
			o.UpdateDatabase = bin
			return load.BenchRehearse(ctx, stdout, stderr, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 1000000, "messages in the generated database")
	f.IntVar(&o.Version, "schema-version", 69, "the schema version the generated database is at (the upgrade goes to 83)")
	f.StringVar(&o.Engine, "engine", "both", "sqlite, postgres or both")
	f.IntVar(&o.Rounds, "rounds", 1, "measure this many times (each round: reference copy, real upgrade, rehearsal)")
	f.BoolVar(&o.WAL, "sqlite-wal", false, "SQLite: the database in WAL mode, as Synapse's (copied with the backup API)")
	f.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "hsops-bench-rehearse"), "directory for the generated database (reused across runs)")
	f.StringVar(&o.PGURL, "postgres-url", os.Getenv(pgcluster.EnvURL), "PostgreSQL admin URL")
	f.StringVar(&o.UpdateDatabase, "update-database", "", "the update_database binary (default: next to hsload, then PATH)")
	return cmd
}
