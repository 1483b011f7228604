// Package status says where a configured database stands, changing
// nothing: whose it is (empty, the hsops engine's, Synapse's, unknown), its
// schema and compat versions, the releases that match and can use it, the
// deltas an upgrade would apply and the background updates pending.
// It builds on package inspect's read-only look.
package status

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/releases"
	"hsops/internal/synapse"
	"hsops/schema"
	"hsops/schema/engine"
)

// Database is the status of one physical database (also the --json shape
// of update_database status).
type Database struct {
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
	// Work is the estimated work of pending Synapse background updates,
	// by name, where it is known (synapse.Estimate).
	Work           map[string]Work `json:"background_update_work,omitempty"`
	CreatedVersion int             `json:"created_at_schema,omitempty"`
	CreatedAt      string          `json:"created_at,omitempty"`
	// Note says why nothing is pending on a database newer than hsops
	// knows that this version may use.
	Note string `json:"note,omitempty"`
	// RolledBackFrom is the version the last rollback started from, when
	// a rollback brought the database to its version (at RolledBackAt).
	RolledBackFrom int    `json:"rolled_back_from,omitempty"`
	RolledBackAt   string `json:"rolled_back_at,omitempty"`
	// Problem is why the database cannot be used, created or planned, if
	// it cannot.
	Problem string `json:"problem,omitempty"`
	problem error
}

// Err is the problem status reports, with its class and hint (nil when
// there is none).
func (s Database) Err() error { return s.problem }

func (s *Database) setProblem(err error) {
	s.problem = err
	s.Problem = err.Error()
}

// ErrMissing is a SQLite database file that does not exist: status says
// so rather than describe an empty database (a mistyped path).
var ErrMissing = fault.New(fault.Database, "the SQLite database does not exist",
	"check database.args.database in <config>; to create a new database there: update_database --database-config <config>")

// Of reads the status of every database of a configuration, in the
// configuration's order.
func Of(ctx context.Context, cfg *config.Config) ([]Database, error) {
	var all []Database
	for _, dbc := range cfg.Databases {
		s, err := One(ctx, dbc)
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	return all, nil
}

// One reads the status of one database.
func One(ctx context.Context, dbc config.Database) (Database, error) {
	ro, st, err := inspect.Inspect(ctx, dbc)
	if err != nil {
		return Database{}, err
	}
	if ro != nil {
		defer ro.Close()
	}
	s := Database{Database: inspect.Describe(dbc), Label: dbc.Label, Stores: dbc.DataStores, Kind: st.Kind.String(),
		Applied: len(st.Applied), Updates: st.Updates, PendingDeltas: []string{}}
	if s.Updates == nil {
		s.Updates = []schema.PendingUpdate{}
	}
	if ro != nil && st.Kind == schema.KindSynapse {
		for _, u := range st.Updates {
			if left, total, ok := synapse.Estimate(ctx, ro, u.Name, u.Progress); ok {
				if s.Work == nil {
					s.Work = map[string]Work{}
				}
				s.Work[u.Name] = Work{Done: total - left, Total: total}
			}
		}
	}
	if ro == nil && dbc.IsSQLite() {
		s.Kind = "missing"
		path := dbc.SQLitePath()
		err := fmt.Errorf("%w: %q", ErrMissing, path)
		if st, serr := os.Stat(filepath.Dir(path)); serr != nil || !st.IsDir() {
			err = fault.Wrap(fault.Database, fmt.Errorf("%w: %q (its directory does not exist either)", ErrMissing, path),
				"check database.args.database in <config>: a mistyped path?")
		}
		s.setProblem(err)
		return s, nil
	}
	s.versions(st)
	if st.Kind == schema.KindEngine || st.Kind == schema.KindEmpty {
		s.pending(st, dbc)
	}
	return s, nil
}

// versions fills in the bookkeeping and the releases it matches.
func (s *Database) versions(st *schema.State) {
	if st.HasCompat {
		c := st.Compat
		s.Compat = &c
	}
	if n := len(st.Applied); n > 0 {
		s.NewestApplied = st.Applied[n-1]
	}
	if m := st.Mark; m != nil {
		s.CreatedVersion = m.CreatedVersion
		s.CreatedAt = time.UnixMilli(m.CreatedTS).UTC().Format(time.RFC3339)
		if m.RolledBackFrom > 0 && m.RolledBackTo == st.Version {
			s.RolledBackFrom = m.RolledBackFrom
			s.RolledBackAt = time.UnixMilli(m.RolledBackTS).UTC().Format(time.RFC3339)
		}
	}
	if !st.HasVersion {
		return
	}
	s.Schema = st.Version
	s.Upgraded = st.Upgraded
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

// pending plans the engine's upgrade of the database.
func (s *Database) pending(st *schema.State, dbc config.Database) {
	plan, err := engine.Schema().Plan(st, inspect.EngineOf(dbc), schema.Options{Stores: dbc.DataStores, Worker: false})
	if err != nil {
		s.setProblem(err)
		return
	}
	if plan.Note != "" && st.Version > engine.Schema().Version {
		s.Note = plan.Note
	}
	s.PendingTarget = plan.Target
	for _, step := range plan.Steps {
		for _, d := range step.Deltas {
			s.PendingDeltas = append(s.PendingDeltas, d.Key())
		}
	}
}

// Work is a background update's estimated items done and total.
type Work struct {
	Done  int64 `json:"items_done"`
	Total int64 `json:"items_total"`
}

// Queue is the background-update queue of one database.
type Queue struct {
	// Database describes the database (Describe).
	Database string
	schema.UpdatesStatus
}

// Updates reads the background-update queue of every database of a
// configuration: engine and Synapse databases alike.
func Updates(ctx context.Context, cfg *config.Config) ([]Queue, error) {
	var out []Queue
	for _, dbc := range cfg.Databases {
		ro, st, err := inspect.InspectExisting(ctx, dbc)
		if err != nil {
			return nil, err
		}
		q := Queue{Database: inspect.Describe(dbc), UpdatesStatus: engine.Schema().Updates.Status(ctx, ro, st)}
		if st.Kind == schema.KindSynapse {
			// Synapse runs its own handlers: the work is estimated from
			// progress_json and the table each walks.
			for i, u := range q.Pending {
				if left, total, ok := synapse.Estimate(ctx, ro, u.Name, u.Progress); ok {
					q.Pending[i].Left, q.Pending[i].Total = &left, &total
				}
			}
		}
		ro.Close()
		out = append(out, q)
	}
	return out, nil
}
