package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/proc"
	"hsops/internal/repair"
	"hsops/schema"
)

func newRepairCmd(ctx context.Context, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Repair known corruptions (engine and Synapse databases)",
		Args:  cli.NoArgs,
	}
	var dryRun, force bool
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
			return runRepairEdges(ctx, g, dryRun, force)
		},
	}
	edges.Flags().BoolVar(&dryRun, "dry-run", false, "count and show the duplicates, change nothing")
	edges.Flags().BoolVar(&force, "force", false, "repair even though the homeserver seems to be running (pid file, the SQLite file open elsewhere, other PostgreSQL sessions)")
	cmd.AddCommand(edges)
	return cmd
}

func runRepairEdges(ctx context.Context, g *globals, dryRun, force bool) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	dbc, err := cfg.DatabaseFor("state")
	if err != nil {
		return err
	}
	ro, st, err := inspect(ctx, dbc)
	if err != nil {
		return err
	}
	if ro == nil {
		return fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
	}
	ro.Close()
	if st.Kind == schema.KindEmpty || st.Kind == schema.KindUnknown {
		return fmt.Errorf("%w: it has no state_group_edges table", schema.ErrNotHomeserver)
	}
	var d *db.DB
	if dryRun {
		d, err = db.Open(ctx, dbc, db.Options{ReadOnly: true, AppName: "hsops update_database repair"})
	} else {
		if !force {
			if err := refuseIfRunning(cfg, dbc); err != nil {
				return err
			}
		}
		d, err = db.Open(ctx, dbc, db.Options{AppName: "hsops update_database repair"})
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if !dryRun && !force && d.Engine == db.Postgres {
		if err := refuseIfSessions(ctx, d); err != nil {
			return err
		}
	}
	dups, err := repair.ListDuplicateEdges(ctx, d, 20)
	if err != nil {
		return err
	}
	res, err := repair.RepairEdges(ctx, d, dryRun)
	if err != nil {
		return err
	}
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(map[string]any{"database": describe(dbc), "kind": st.Kind.String(), "duplicates": dups, "result": res})
		return nil
	}
	desc := describe(dbc)
	if res.Pairs == 0 {
		fmt.Fprintf(g.stdout, "%s: no duplicate state_group_edges rows (%d rows); nothing to do\n", desc, res.Remaining)
		return nil
	}
	fmt.Fprintf(g.stdout, "%s: %d duplicated (state_group, prev_state_group) pairs, %d extra rows\n", desc, res.Pairs, res.Removed)
	for _, e := range dups {
		fmt.Fprintf(g.stdout, "  state_group %d -> prev_state_group %d: %d copies\n", e.StateGroup, e.PrevStateGroup, e.Count)
	}
	if int64(len(dups)) < res.Pairs {
		fmt.Fprintf(g.stdout, "  ... and %d more pairs\n", res.Pairs-int64(len(dups)))
	}
	if dryRun {
		fmt.Fprintf(g.stdout, "would remove %d rows, keeping one of each pair; nothing was changed (--dry-run)\n", res.Removed)
		return nil
	}
	fmt.Fprintf(g.stdout, "removed %d rows in one transaction; %d rows remain, each pair once\n", res.Removed, res.Remaining)
	if st.Kind == schema.KindEngine {
		fmt.Fprintf(g.stdout, "next: update_database --database-config %s --run-background-updates\n", g.configArg())
	} else {
		fmt.Fprintln(g.stdout, "next: start Synapse; it builds state_group_edges_unique_idx in the background")
	}
	return nil
}

// errInUse is the refusal to repair a database a homeserver is using.
var errInUse = fault.New(fault.InUse, "the database is in use", "")

// refuseIfRunning refuses when the homeserver of the config is running on
// the database, or another process holds its SQLite file open
// (proc.HomeserverRunning: a pid file naming an unrelated process does not
// count).
func refuseIfRunning(cfg *config.Config, dbc config.Database) error {
	return refuseInUse(cfg, dbc, "nothing was changed: run the same command again once it is stopped, then start it; --force goes ahead anyway")
}

// refuseInUse is refuseIfRunning with the advice given after the holders'.
func refuseInUse(cfg *config.Config, dbc config.Database, then string) error {
	t := proc.TargetOf(cfg)
	t.SQLite = nil
	if dbc.IsSQLite() {
		t.SQLite = []string{dbc.SQLitePath()}
	}
	if err := proc.HomeserverRunning(t).Refusal(then); err != nil {
		return fault.Wrap(fault.InUse, fmt.Errorf("%w: %w", errInUse, err), fault.HintOf(err))
	}
	return nil
}

// refuseIfSessions refuses when other sessions are connected to the
// PostgreSQL database (a running homeserver or worker).
func refuseIfSessions(ctx context.Context, d *db.DB) error {
	rows, err := d.QueryContext(ctx, `SELECT pid, coalesce(application_name, ''), coalesce(host(client_addr), 'local')
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var who []string
	for rows.Next() {
		var pid int
		var app, addr string
		if err := rows.Scan(&pid, &app, &addr); err != nil {
			return err
		}
		if strings.HasPrefix(app, "hsops update_database") {
			continue
		}
		if app == "" {
			app = "a client"
		}
		who = append(who, fmt.Sprintf("%s (server pid %d, from %s)", app, pid, addr))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(who) == 0 {
		return nil
	}
	return fault.Errorf(fault.InUse, "stop the homeserver and its workers first; if those sessions are not a homeserver, add --force",
		"%w: %d other session(s) are connected: %s", errInUse, len(who), strings.Join(who, "; "))
}
