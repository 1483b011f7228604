package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
	"hsops/schema/engine"
)

func newBackgroundCmd(ctx context.Context, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "background",
		Short: "Inspect, run and queue background updates",
		Long: `Background updates are the long data migrations that schema deltas queue
(new indexes over big tables, back-filled columns). They run batch by batch;
each batch is one transaction that also saves the update's progress, so a
killed run resumes where it stopped.`,
		Args: cli.NoArgs,
	}
	cmd.AddCommand(newBackgroundStatusCmd(ctx, g), newBackgroundRunCmd(ctx, g), newStartJobCmd(ctx, g), newEnabledCmd(ctx, g))
	return cmd
}

func newBackgroundStatusCmd(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status --database-config homeserver.yaml [--json]",
		Short: "List pending background updates, their progress and dependencies (read-only; Synapse databases too)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			reg := engine.Schema().Updates
			for _, dbc := range cfg.Databases {
				ro, st, err := inspect(ctx, dbc)
				if err != nil {
					return err
				}
				if ro == nil {
					return fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
				}
				type row struct {
					schema.PendingUpdate
					Next    bool   `json:"next"`
					Handler bool   `json:"handled_by_hsops"`
					Left    *int64 `json:"items_left,omitempty"`
					Total   *int64 `json:"items_total,omitempty"`
				}
				next, nextErr := schema.Next(st.Updates)
				var rows []row
				for _, u := range st.Updates {
					r := row{PendingUpdate: u, Next: nextErr == nil && next.Name == u.Name}
					if h, ok := reg.Lookup(u.Name); ok && st.Kind == schema.KindEngine {
						r.Handler = true
						if h.Total != nil {
							if left, total, err := h.Total(ctx, ro, schema.Env{Engine: ro.Engine}, json.RawMessage(u.Progress)); err == nil {
								r.Left, r.Total = &left, &total
							}
						}
					}
					rows = append(rows, r)
				}
				ro.Close()
				if g.json {
					cli.NewJSONLines(g.stdout).Emit(map[string]any{"database": describe(dbc), "kind": st.Kind.String(), "pending": rows})
					continue
				}
				fmt.Fprintf(g.stdout, "%s (%s database): ", describe(dbc), st.Kind)
				if len(rows) == 0 {
					fmt.Fprintln(g.stdout, "no background update pending")
					continue
				}
				fmt.Fprintf(g.stdout, "%d background update(s) pending\n", len(rows))
				for _, r := range rows {
					mark := " "
					if r.Next {
						mark = "*"
					}
					line := fmt.Sprintf(" %s %-58s ordering %-5d", mark, r.Name, r.Ordering)
					if r.DependsOn != "" {
						line += " after " + r.DependsOn
					}
					if r.Left != nil && r.Total != nil {
						line += fmt.Sprintf(" %d/%d items left", *r.Left, *r.Total)
					}
					if r.Progress != "{}" {
						line += " progress " + r.Progress
					}
					fmt.Fprintln(g.stdout, strings.TrimRight(line, " "))
				}
				if nextErr != nil {
					fmt.Fprintf(g.stdout, "   (%v)\n", nextErr)
				} else {
					fmt.Fprintln(g.stdout, "   * runs next")
				}
				if st.Kind == schema.KindSynapse {
					fmt.Fprintln(g.stdout, "   Synapse runs these itself while it serves (or with update_synapse_database --run-background-updates)")
				}
			}
			return nil
		},
	}
}

func newBackgroundRunCmd(ctx context.Context, g *globals) *cobra.Command {
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
				d, err := openEngineDB(ctx, dbc, "run background updates")
				if err != nil {
					return err
				}
				err = runBackground(ctx, g, d, cfg, update)
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

// openEngineDB opens a database for writing after checking that the engine
// owns it; anything else is refused before the read-write open.
func openEngineDB(ctx context.Context, dbc config.Database, what string) (*db.DB, error) {
	ro, st, err := inspect(ctx, dbc)
	if err != nil {
		return nil, err
	}
	if ro == nil {
		return nil, fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
	}
	ro.Close()
	switch st.Kind {
	case schema.KindSynapse:
		return nil, fault.Wrap(fault.NotOurs, fmt.Errorf("%w: this is a Synapse database: Synapse runs its background updates itself, so hsops will not %s here", schema.ErrNotEngine, what),
			"nothing was changed: start Synapse to run them (its admin API controls them); `update_database background status` shows them")
	case schema.KindUnknown, schema.KindEmpty:
		return nil, fmt.Errorf("%w: the database has no homeserver schema", schema.ErrNotHomeserver)
	}
	return db.Open(ctx, dbc, db.Options{AppName: "hsops update_database"})
}

// runBackground runs the pending updates (or one) under the schema lock.
func runBackground(ctx context.Context, g *globals, d *db.DB, cfg *config.Config, only string) error {
	lock, err := schema.AcquireLock(ctx, d, "update_database --run-background-updates")
	if err != nil {
		return err
	}
	defer lock.Release()
	out := newReporter(g)
	r := &schema.Runner{DB: d, Registry: engine.Schema().Updates, Env: schema.Env{Engine: d.Engine, ServerName: cfg.ServerName},
		Tuning: schema.Tuning(cfg.BackgroundUpdates), OnEvent: out.updateEvent}
	t0 := time.Now()
	pending, err := schema.ReadUpdates(ctx, d)
	if err != nil {
		return err
	}
	if only != "" {
		err = r.RunOne(ctx, only)
	} else {
		err = r.RunAll(ctx)
	}
	if err != nil {
		return err
	}
	n := len(pending)
	if only != "" {
		n = 1
	}
	out.emit(map[string]any{"event": "background_updates_done", "database": d.Desc, "updates": n, "ms": time.Since(t0).Milliseconds()})
	if n == 0 {
		out.line("%s: no background update pending", d.Desc)
	} else {
		out.line("%s: %d background update(s) done in %s", d.Desc, n, round(time.Since(t0)))
	}
	return nil
}

func newStartJobCmd(ctx context.Context, g *globals) *cobra.Command {
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
			d, err := openEngineDB(ctx, dbc, "queue jobs")
			if err != nil {
				return err
			}
			defer d.Close()
			if err := engine.Schema().Updates.StartJob(ctx, d, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "queued %s; it runs when the homeserver runs its background updates, or now with:\n  update_database background run --database-config %s\n", args[0], g.configArg())
			return nil
		},
	}
}

func newEnabledCmd(ctx context.Context, g *globals) *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "enabled [on|off] --server URL --access-token TOKEN",
		Short: "Show or set whether a running homeserver runs background updates (admin API; not persisted across restarts)",
		Args:  cli.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				return cli.Usagef("--server is required: the base URL of the homeserver's client listener, e.g. http://127.0.0.1:8008")
			}
			if token == "" {
				token = os.Getenv("HSOPS_ACCESS_TOKEN")
			}
			if token == "" {
				return cli.Usagef("an admin access token is required: --access-token or HSOPS_ACCESS_TOKEN")
			}
			url := strings.TrimRight(server, "/") + "/_synapse/admin/v1/background_updates/enabled"
			var body io.Reader
			method := http.MethodGet
			if len(args) == 1 {
				var on bool
				switch args[0] {
				case "on", "true", "yes":
					on = true
				case "off", "false", "no":
				default:
					return cli.Usagef("want on or off, got %q", args[0])
				}
				method = http.MethodPost
				b, _ := json.Marshal(map[string]bool{"enabled": on})
				body = bytes.NewReader(b)
			}
			req, err := http.NewRequestWithContext(ctx, method, url, body)
			if err != nil {
				return cli.Usagef("bad --server: %v", err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				return fault.Errorf(fault.Down, "check --server: the homeserver must be running and listening there", "reach the homeserver: %w", err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				var merr struct{ Errcode, Error string }
				_ = json.Unmarshal(data, &merr)
				return fault.Errorf(fault.Rejected, "the access token must belong to a server admin", "homeserver answered %s: %s %s", resp.Status, merr.Errcode, merr.Error)
			}
			var res struct {
				Enabled bool `json:"enabled"`
			}
			if err := json.Unmarshal(data, &res); err != nil {
				return fmt.Errorf("read homeserver answer: %w", err)
			}
			if g.json {
				cli.NewJSONLines(g.stdout).Emit(res)
				return nil
			}
			state := "disabled"
			if res.Enabled {
				state = "enabled"
			}
			fmt.Fprintf(g.stdout, "background updates are %s on %s\n", state, server)
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "base URL of the running homeserver")
	cmd.Flags().StringVar(&token, "access-token", "", "an admin's access token (or HSOPS_ACCESS_TOKEN)")
	return cmd
}
