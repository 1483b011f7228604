package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/offline"
	"hsops/internal/status"
	"hsops/schema"
	"hsops/schema/engine"
)

func newBackgroundCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "background",
		Short: "Inspect, run and queue background updates",
		Long: `Background updates are the long data migrations that schema deltas queue
(new indexes over big tables, back-filled columns). They run batch by batch;
each batch is one transaction that also saves the update's progress, so a
killed run resumes where it stopped.`,
		Args: cli.NoArgs,
	}
	cmd.AddCommand(newBackgroundStatusCmd(g), newBackgroundRunCmd(g), newStartJobCmd(g), newEnabledCmd(g))
	return cmd
}

func newBackgroundStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status --database-config homeserver.yaml [--json]",
		Short: "List pending background updates, their progress and dependencies (read-only; Synapse databases too)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			queues, err := status.Updates(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			for _, q := range queues {
				printQueue(g, q)
			}
			return nil
		},
	}
}

// printQueue prints the background-update queue of one database.
func printQueue(g *globals, q status.Queue) {
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(map[string]any{"database": q.Database, "kind": q.Kind.String(), "pending": q.Pending})
		return
	}
	fmt.Fprintf(g.stdout, "%s (%s database): ", q.Database, q.Kind)
	if len(q.Pending) == 0 {
		fmt.Fprintln(g.stdout, "no background update pending")
		return
	}
	fmt.Fprintf(g.stdout, "%d background update(s) pending\n", len(q.Pending))
	for _, u := range q.Pending {
		mark := " "
		if u.Next {
			mark = "*"
		}
		line := fmt.Sprintf(" %s %-58s ordering %-5d", mark, u.Name, u.Ordering)
		if u.DependsOn != "" {
			line += " after " + u.DependsOn
		}
		if u.Left != nil && u.Total != nil {
			line += fmt.Sprintf(" %d/%d items left", *u.Left, *u.Total)
		}
		if u.Progress != "{}" {
			line += " progress " + u.Progress
		}
		fmt.Fprintln(g.stdout, strings.TrimRight(line, " "))
	}
	if q.Blocked != nil {
		fmt.Fprintf(g.stdout, "   (%v)\n", q.Blocked)
	} else {
		fmt.Fprintln(g.stdout, "   * runs next")
	}
	if q.Kind == schema.KindSynapse {
		fmt.Fprintln(g.stdout, "   Synapse runs these itself while it serves (or now: update_database --database-config CONFIG --python PY --run-background-updates)")
	}
}

func newBackgroundRunCmd(g *globals) *cobra.Command {
	var update string
	cmd := &cobra.Command{
		Use:   "run --database-config homeserver.yaml [--update NAME]",
		Short: "Run pending background updates to completion (or one of them), without sleeping between batches",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			for _, dbc := range cfg.Databases {
				d, err := inspect.OpenEngine(cmd.Context(), dbc, "run background updates")
				if err != nil {
					return err
				}
				if err := offline.CheckWritable(cmd.Context(), dbc, true); err != nil {
					d.Close()
					return err
				}
				err = runBackground(cmd.Context(), g, d, cfg, update)
				d.Close()
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&update, "update", "", "run only this update (its dependency must be done)")
	return cmd
}

// runBackground runs the pending updates (or one) under the schema lock,
// showing their progress.
func runBackground(ctx context.Context, g *globals, d *db.DB, cfg *config.Config, only string) error {
	out := newReporter(g)
	r := &schema.Runner{DB: d, Registry: engine.Schema().Updates, Env: schema.Env{Engine: d.Engine, ServerName: cfg.ServerName},
		Tuning: schema.Tuning(cfg.BackgroundUpdates), OnEvent: out.updateEvent}
	res, err := r.RunPending(ctx, "update_database --run-background-updates", only)
	if err != nil {
		return err
	}
	out.emit(map[string]any{"event": "background_updates_done", "database": d.Desc, "updates": res.Updates, "ms": res.Duration.Milliseconds()})
	if res.Updates == 0 {
		out.line("%s: no background update pending", d.Desc)
	} else {
		out.line("%s: %d background update(s) done in %s", d.Desc, res.Updates, round(res.Duration))
	}
	return nil
}

func newStartJobCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "start-job JOB --database-config homeserver.yaml",
		Short: "Queue an on-demand job, as the admin API's start_job (populate_stats_process_rooms, regenerate_directory)",
		Args:  cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			dbc, err := cfg.MainDatabase()
			if err != nil {
				return err
			}
			d, err := inspect.OpenEngine(cmd.Context(), dbc, "queue jobs")
			if err != nil {
				return err
			}
			defer d.Close()
			if err := engine.Schema().Updates.StartJob(cmd.Context(), d, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "queued %s; it runs when the homeserver runs its background updates, or now with:\n  update_database background run --database-config %s\n", args[0], g.configArg())
			return nil
		},
	}
}

func newEnabledCmd(g *globals) *cobra.Command {
	var api schema.AdminAPI
	cmd := &cobra.Command{
		Use:   "enabled [on|off] (--database-config homeserver.yaml | --server URL) [--access-token TOKEN]",
		Short: "Show or set whether a running homeserver runs background updates (admin API; not persisted across restarts)",
		Long: `enabled asks the running homeserver, through its admin API, whether it runs
background updates, and with on or off switches them (until it restarts).
The homeserver is found at the config's first client listener (as homeserver
register-user finds it), or at --server URL. The token is an admin's access
token: --access-token, else HSOPS_ACCESS_TOKEN.`,
		Args: cli.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var set *bool
			if len(args) == 1 {
				var on bool
				switch args[0] {
				case "on", "true", "yes":
					on = true
				case "off", "false", "no":
				default:
					return cli.Usagef("want on or off, got %q", args[0])
				}
				set = &on
			}
			if api.URL != "" {
				api.URLFrom = "--server"
			} else {
				if len(g.configPaths) == 0 {
					return cli.Usagef("give --database-config (the homeserver's listener is read from it) or --server URL")
				}
				cfg, err := config.Load(g.configPaths...)
				if err != nil {
					return err
				}
				if api.URL = config.BaseURL(cfg.Listeners); api.URL == "" {
					return fault.Errorf(fault.Config, "add an http listener to the config, or pass --server URL", "no HTTP listener in %s", strings.Join(cfg.Files, ", "))
				}
				api.URLFrom = "the client listener of " + strings.Join(cfg.Files, ", ")
			}
			switch {
			case api.Token != "":
				api.TokenFrom = "--access-token"
			case os.Getenv("HSOPS_ACCESS_TOKEN") != "":
				api.Token, api.TokenFrom = os.Getenv("HSOPS_ACCESS_TOKEN"), "HSOPS_ACCESS_TOKEN"
			default:
				return fault.Errorf(fault.Usage, "homeserver register-user -c <config> --user NAME --admin registers an admin and prints its token",
					"an admin access token is required: --access-token or HSOPS_ACCESS_TOKEN")
			}
			enabled, err := api.UpdatesEnabled(cmd.Context(), set)
			if err != nil {
				return err
			}
			if g.json {
				cli.NewJSONLines(g.stdout).Emit(map[string]bool{"enabled": enabled})
				return nil
			}
			state := "disabled"
			if enabled {
				state = "enabled"
			}
			fmt.Fprintf(g.stdout, "background updates are %s on %s\n", state, api.URL)
			return nil
		},
	}
	cmd.Flags().StringVar(&api.URL, "server", "", "base URL of the running homeserver (default: the config's client listener)")
	cmd.Flags().StringVar(&api.Token, "access-token", "", "an admin's access token (or HSOPS_ACCESS_TOKEN)")
	return cmd
}
