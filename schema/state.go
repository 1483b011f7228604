package schema

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"hsops/internal/db"
)

// Kind says whose database this is.
type Kind int

// The kinds of database ReadState tells apart.
const (
	// KindEmpty is a database with no tables: a new database.
	KindEmpty Kind = iota
	// KindEngine is a database created by the hsops engine.
	KindEngine
	// KindSynapse is a homeserver database the engine did not create
	// (Synapse's): it has schema_version but no engine mark.
	KindSynapse
	// KindUnknown holds tables but no homeserver bookkeeping.
	KindUnknown
)

func (k Kind) String() string {
	switch k {
	case KindEmpty:
		return "empty"
	case KindEngine:
		return "engine"
	case KindSynapse:
		return "synapse"
	}
	return "unknown"
}

// Mark is the engine's mark on a database it created.
type Mark struct {
	Engine         string
	CreatedVersion int
	CreatedTS      int64
}

// PendingUpdate is a row of background_updates.
type PendingUpdate struct {
	Name      string `json:"name"`
	Ordering  int    `json:"ordering"`
	DependsOn string `json:"depends_on,omitempty"`
	Progress  string `json:"progress_json"`
}

// State is what a database's bookkeeping says about its schema.
type State struct {
	Kind Kind
	// HasVersion is false for a new database.
	HasVersion bool
	Version    int
	// Upgraded is false when the database was created from the snapshot of
	// Version and no delta of Version has run since.
	Upgraded bool
	// HasCompat is false when there is no compat row (a database older than
	// Synapse v1.37, or a new one).
	HasCompat bool
	Compat    int
	// Applied are the applied_schema_deltas entries, "<V>/<file>", sorted by
	// version then file.
	Applied []string
	applied map[string]bool
	// Mark is set for engine databases.
	Mark *Mark
	// Updates are the pending background updates, in scheduling order.
	Updates []PendingUpdate
	// Tables is the number of tables in the database.
	Tables int
}

// IsApplied reports whether a delta ("<V>/<file>") is recorded.
func (s *State) IsApplied(key string) bool { return s.applied[key] }

// ReadState reads a database's schema bookkeeping without writing anything.
func ReadState(ctx context.Context, d *db.DB, q db.Querier) (*State, error) {
	tables, err := d.Tables(ctx, q)
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, t := range tables {
		has[t] = true
	}
	st := &State{Tables: len(tables), applied: map[string]bool{}}
	if has["schema_version"] {
		var upgraded any
		err := q.QueryRowContext(ctx, "SELECT version, upgraded FROM schema_version").Scan(&st.Version, &upgraded)
		switch {
		case err == sql.ErrNoRows:
		case err != nil:
			return nil, fmt.Errorf("read schema_version: %w", err)
		default:
			st.HasVersion = true
			st.Upgraded = db.Truthy(upgraded)
		}
	}
	if has["schema_compat_version"] {
		err := q.QueryRowContext(ctx, "SELECT compat_version FROM schema_compat_version").Scan(&st.Compat)
		switch {
		case err == sql.ErrNoRows:
		case err != nil:
			return nil, fmt.Errorf("read schema_compat_version: %w", err)
		default:
			st.HasCompat = true
		}
	}
	if has["applied_schema_deltas"] {
		if err := st.readApplied(ctx, q); err != nil {
			return nil, err
		}
	}
	if has["hsops_engine"] {
		var m Mark
		err := q.QueryRowContext(ctx, "SELECT engine, created_version, created_ts FROM hsops_engine").Scan(&m.Engine, &m.CreatedVersion, &m.CreatedTS)
		if err != nil && err != sql.ErrNoRows {
			return nil, fmt.Errorf("read hsops_engine: %w", err)
		}
		if err == nil {
			st.Mark = &m
		}
	}
	if has["background_updates"] {
		if st.Updates, err = ReadUpdates(ctx, q); err != nil {
			return nil, err
		}
	}
	bookkeeping := map[string]bool{"schema_version": true, "schema_compat_version": true, "applied_schema_deltas": true, "applied_module_schemas": true}
	others := 0
	for _, t := range tables {
		if !bookkeeping[t] {
			others++
		}
	}
	switch {
	case st.Mark != nil && st.HasVersion:
		st.Kind = KindEngine
	case st.HasVersion:
		st.Kind = KindSynapse
	case others == 0:
		st.Kind = KindEmpty
	default:
		st.Kind = KindUnknown
	}
	return st, nil
}

func (st *State) readApplied(ctx context.Context, q db.Querier) error {
	rows, err := q.QueryContext(ctx, "SELECT version, file FROM applied_schema_deltas")
	if err != nil {
		return fmt.Errorf("read applied_schema_deltas: %w", err)
	}
	defer rows.Close()
	type entry struct {
		v    int
		file string
	}
	var entries []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.v, &e.file); err != nil {
			return err
		}
		entries = append(entries, e)
		st.applied[e.file] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].v != entries[j].v {
			return entries[i].v < entries[j].v
		}
		return entries[i].file < entries[j].file
	})
	for _, e := range entries {
		st.Applied = append(st.Applied, e.file)
	}
	return nil
}

// ReadUpdates lists the pending background updates in the order the
// scheduler considers them (ordering, then name).
func ReadUpdates(ctx context.Context, q db.Querier) ([]PendingUpdate, error) {
	rows, err := q.QueryContext(ctx, "SELECT update_name, ordering, depends_on, progress_json FROM background_updates ORDER BY ordering, update_name")
	if err != nil {
		return nil, fmt.Errorf("read background_updates: %w", err)
	}
	defer rows.Close()
	var out []PendingUpdate
	for rows.Next() {
		var u PendingUpdate
		var dep sql.NullString
		if err := rows.Scan(&u.Name, &u.Ordering, &dep, &u.Progress); err != nil {
			return nil, err
		}
		u.DependsOn = dep.String
		out = append(out, u)
	}
	return out, rows.Err()
}
