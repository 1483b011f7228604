package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"hsops/internal/db"
	"hsops/schema/bookkeeping"
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
type Mark = bookkeeping.Mark

// PendingUpdate is a row of background_updates.
type PendingUpdate = bookkeeping.Update

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
	if err := checkReadable(ctx, d, q); err != nil {
		return nil, err
	}
	tables, err := d.Tables(ctx, q)
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, t := range tables {
		has[t] = true
	}
	st := &State{Tables: len(tables), applied: map[string]bool{}}
	book := bookkeeping.New(d.Engine)
	if has["schema_version"] {
		if st.Version, st.Upgraded, st.HasVersion, err = book.Version(ctx, q); err != nil {
			return nil, err
		}
	}
	if has["schema_compat_version"] {
		if st.Compat, st.HasCompat, err = book.Compat(ctx, q); err != nil {
			return nil, err
		}
	}
	if has["applied_schema_deltas"] {
		applied, err := book.Applied(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, a := range applied {
			st.Applied = append(st.Applied, a.File)
			st.applied[a.File] = true
		}
	}
	if has["hsops_engine"] {
		if st.Mark, err = book.Mark(ctx, q); err != nil {
			return nil, err
		}
	}
	if has["background_updates"] {
		if st.Updates, err = book.Updates(ctx, q); err != nil {
			return nil, err
		}
	}
	others := 0
	for _, t := range tables {
		if !bookkeepingTables[t] {
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

// bookkeepingTables are the tables every homeserver database gets first:
// a database that holds nothing else is empty.
var bookkeepingTables = map[string]bool{"schema_version": true, "schema_compat_version": true, "applied_schema_deltas": true, "applied_module_schemas": true}

// ReadUpdates lists the pending background updates in the order the
// scheduler considers them (ordering, then name). The queue reads the same
// on both engines, so the zero Store reads it.
func ReadUpdates(ctx context.Context, q db.Querier) ([]PendingUpdate, error) {
	return bookkeeping.Store{}.Updates(ctx, q)
}

// checkReadable refuses a PostgreSQL schema_version the user may not read.
func checkReadable(ctx context.Context, d *db.DB, q db.Querier) error {
	if d.Engine != db.Postgres {
		return nil
	}
	var user, owner string
	err := q.QueryRowContext(ctx, `SELECT current_user, tableowner FROM pg_tables
		WHERE schemaname = current_schema() AND tablename = 'schema_version'
		  AND NOT has_table_privilege(quote_ident(schemaname) || '.' || quote_ident(tablename), 'SELECT')`).Scan(&user, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ask %s whether schema_version is readable: %w", d.Desc, err)
	}
	return &db.NotPermittedError{Database: d.Desc, User: user, Owner: owner, Access: "readable",
		Why: fmt.Sprintf("table schema_version is owned by role %s", owner)}
}
