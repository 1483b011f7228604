package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/releases"
	"hsops/schema"
	"hsops/schema/engine"
)

func newStatusCmd(ctx context.Context, g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status --database-config homeserver.yaml [--json]",
		Short: "Show where a database stands: owner, schema and compat versions, matching releases, pending work",
		Long: `status reads a database's bookkeeping and changes nothing. It works on
databases created by the hsops engine and on Synapse's own databases.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(ctx, g) },
	}
}

// dbStatus is the status of one physical database (also the --json shape).
type dbStatus struct {
	Database string   `json:"database"`
	Label    string   `json:"label"`
	Stores   []string `json:"data_stores"`
	Kind     string   `json:"kind"`
	Schema   int      `json:"schema_version,omitempty"`
	Upgraded bool     `json:"upgraded,omitempty"`
	Compat   *int     `json:"compat_version,omitempty"`
	Matching []string `json:"matching_releases,omitempty"`
	// MatchingBySchemaOnly says that no release has both versions: the
	// releases given share only the schema version.
	MatchingBySchemaOnly bool                   `json:"matching_by_schema_only,omitempty"`
	OldestUsable         string                 `json:"oldest_release_that_can_use_it,omitempty"`
	Applied              int                    `json:"applied_deltas"`
	NewestApplied        string                 `json:"newest_applied_delta,omitempty"`
	PendingDeltas        []string               `json:"pending_deltas"`
	PendingTarget        int                    `json:"pending_target,omitempty"`
	Updates              []schema.PendingUpdate `json:"pending_background_updates"`
	CreatedVersion       int                    `json:"created_at_schema,omitempty"`
	CreatedAt            string                 `json:"created_at,omitempty"`
	Problem              string                 `json:"problem,omitempty"`
}

func runStatus(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	var all []dbStatus
	for _, dbc := range cfg.Databases {
		s, err := statusOf(ctx, dbc, cfg)
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	if g.json {
		out := newReporter(g)
		for _, s := range all {
			out.jsonl.Emit(s)
		}
		return nil
	}
	for i, s := range all {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		printStatus(g.stdout, s, g.configArg())
	}
	return nil
}

func statusOf(ctx context.Context, dbc config.Database, cfg *config.Config) (dbStatus, error) {
	ro, st, err := inspect(ctx, dbc)
	if err != nil {
		return dbStatus{}, err
	}
	if ro != nil {
		defer ro.Close()
	}
	s := dbStatus{Database: describe(dbc), Label: dbc.Label, Stores: dbc.DataStores, Kind: st.Kind.String(),
		Applied: len(st.Applied), Updates: st.Updates, PendingDeltas: []string{}}
	if s.Updates == nil {
		s.Updates = []schema.PendingUpdate{}
	}
	if ro == nil && dbc.IsSQLite() {
		if err := db.CheckCreatable(dbc.SQLitePath()); err != nil {
			s.Problem = err.Error()
		}
	}
	if st.HasVersion {
		s.Schema = st.Version
		s.Upgraded = st.Upgraded
	}
	if st.HasCompat {
		c := st.Compat
		s.Compat = &c
	}
	if n := len(st.Applied); n > 0 {
		s.NewestApplied = st.Applied[n-1]
	}
	if st.Mark != nil {
		s.CreatedVersion = st.Mark.CreatedVersion
		s.CreatedAt = time.UnixMilli(st.Mark.CreatedTS).UTC().Format(time.RFC3339)
	}
	if st.HasVersion {
		for _, f := range releases.Matching(st.Version, st.Compat) {
			s.Matching = append(s.Matching, f.Tag())
			if st.HasCompat && f.Compat != st.Compat {
				s.MatchingBySchemaOnly = true
			}
		}
		if f, ok := releases.OldestCanRun(st.Version, st.Compat); ok {
			s.OldestUsable = f.Tag()
		}
	}
	if st.Kind == schema.KindEngine || st.Kind == schema.KindEmpty {
		plan, err := engine.Schema().Plan(st, engineOf(dbc), schema.Options{Stores: dbc.DataStores, Worker: false})
		if err != nil {
			s.Problem = err.Error()
		} else {
			s.PendingTarget = plan.Target
			for _, step := range plan.Steps {
				for _, d := range step.Deltas {
					s.PendingDeltas = append(s.PendingDeltas, d.Key())
				}
			}
		}
	}
	return s, nil
}

func printStatus(w io.Writer, s dbStatus, configArg string) {
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-20s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("database", "%s (%s: %s)", s.Database, s.Label, strings.Join(s.Stores, ", "))
	switch s.Kind {
	case "empty":
		row("owner", "none: the database is empty")
		if s.Problem != "" {
			row("problem", "%s", s.Problem)
			return
		}
		row("next", "update_database --database-config %s creates it at schema %d", configArg, engine.Schema().Version)
		return
	case "unknown":
		row("owner", "unknown: it holds tables but no homeserver bookkeeping (schema_version)")
		return
	case "synapse":
		row("owner", "Synapse (not created by hsops: update_database will not change its schema)")
	case "engine":
		row("owner", "hsops engine (created at schema %d on %s)", s.CreatedVersion, s.CreatedAt)
	}
	how := "created from the snapshot of this version"
	if s.Upgraded {
		how = "reached by upgrade"
	}
	row("schema version", "%d (%s)", s.Schema, how)
	if s.Compat != nil {
		row("compat version", "%d", *s.Compat)
	} else {
		row("compat version", "none (written by releases before v1.37.0)")
	}
	if len(s.Matching) > 0 && s.MatchingBySchemaOnly {
		row("matching releases", "none with both versions; %s by schema version (their compat version differs)", seriesX(s.Matching))
	} else if len(s.Matching) > 0 {
		row("matching releases", "%s", seriesX(s.Matching))
	} else {
		row("matching releases", "none: no Synapse release has schema %d", s.Schema)
	}
	if s.OldestUsable != "" {
		row("usable by", "%s and later", s.OldestUsable)
	} else {
		row("usable by", "no release up to v1.98: its compat version is newer than every release known")
	}
	applied := fmt.Sprint(s.Applied)
	if s.NewestApplied != "" {
		applied += " (newest: " + s.NewestApplied + ")"
	}
	row("applied deltas", "%s", applied)
	switch {
	case s.Kind == "synapse":
		row("pending deltas", "not known to hsops: Synapse applies its own when it starts")
	case s.Problem != "":
		row("pending deltas", "cannot plan: %s", s.Problem)
	case len(s.PendingDeltas) == 0:
		row("pending deltas", "none (up to date)")
	default:
		row("pending deltas", "%d up to schema %d: run update_database --database-config %s", len(s.PendingDeltas), s.PendingTarget, configArg)
		for _, d := range s.PendingDeltas {
			fmt.Fprintf(w, "%-20s   %s\n", "", d)
		}
	}
	if len(s.Updates) == 0 {
		row("background updates", "none pending")
		return
	}
	row("background updates", "%d pending", len(s.Updates))
	for _, u := range s.Updates {
		dep := ""
		if u.DependsOn != "" {
			dep = ", after " + u.DependsOn
		}
		fmt.Fprintf(w, "%-20s   %s (ordering %d%s) progress %s\n", "", u.Name, u.Ordering, dep, u.Progress)
	}
}

// seriesX renders release tags as minor series: v1.98.0 -> "v1.98.x",
// several -> "v1.70.x-v1.76.x".
func seriesX(tags []string) string {
	x := func(t string) string { return strings.TrimSuffix(t, ".0") + ".x" }
	if len(tags) == 1 {
		return x(tags[0])
	}
	return x(tags[0]) + "-" + x(tags[len(tags)-1])
}
