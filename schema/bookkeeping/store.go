package bookkeeping

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"hsops/internal/db"
)

// Store reads and writes the bookkeeping rows of databases of one engine.
// The engine only decides how query arguments are written, so the zero
// Store serves the reads that take none (Version, Compat, Applied,
// Updates); everything else needs New.
type Store struct {
	engine db.Engine
}

// New returns the store for databases of engine e.
func New(e db.Engine) Store { return Store{engine: e} }

func (s Store) rebind(q string) string { return db.Rebind(s.engine, q) }

// Mark is the engine's mark on a database it created.
type Mark struct {
	Engine         string
	CreatedVersion int
	CreatedTS      int64
	// RolledBackFrom and RolledBackTo are the versions of the last
	// rollback (0 when none is recorded), RolledBackTS when it ran.
	RolledBackFrom, RolledBackTo int
	RolledBackTS                 int64
}

// Update is a row of background_updates: a pending background update.
type Update struct {
	Name      string `json:"name"`
	Ordering  int    `json:"ordering"`
	DependsOn string `json:"depends_on,omitempty"`
	Progress  string `json:"progress_json"`
}

// AppliedDelta is a row of applied_schema_deltas.
type AppliedDelta struct {
	Version int
	// File is "<V>/<file name>".
	File string
}

// Version reads schema_version; ok is false when it has no row.
func (s Store) Version(ctx context.Context, q db.Querier) (version int, upgraded, ok bool, err error) {
	var up any
	err = q.QueryRowContext(ctx, "SELECT version, upgraded FROM schema_version").Scan(&version, &up)
	switch {
	case err == sql.ErrNoRows:
		return 0, false, false, nil
	case err != nil:
		return 0, false, false, fmt.Errorf("read schema_version: %w", err)
	}
	return version, db.Truthy(up), true, nil
}

// Compat reads schema_compat_version; ok is false when it has no row.
func (s Store) Compat(ctx context.Context, q db.Querier) (compat int, ok bool, err error) {
	err = q.QueryRowContext(ctx, "SELECT compat_version FROM schema_compat_version").Scan(&compat)
	switch {
	case err == sql.ErrNoRows:
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read schema_compat_version: %w", err)
	}
	return compat, true, nil
}

// Applied lists applied_schema_deltas, sorted by version then file.
func (s Store) Applied(ctx context.Context, q db.Querier) ([]AppliedDelta, error) {
	rows, err := q.QueryContext(ctx, "SELECT version, file FROM applied_schema_deltas")
	if err != nil {
		return nil, fmt.Errorf("read applied_schema_deltas: %w", err)
	}
	defer rows.Close()
	var out []AppliedDelta
	for rows.Next() {
		var a AppliedDelta
		if err := rows.Scan(&a.Version, &a.File); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].File < out[j].File
	})
	return out, nil
}

// Mark reads hsops_engine: nil when the database has no mark row.
func (s Store) Mark(ctx context.Context, q db.Querier) (*Mark, error) {
	var m Mark
	err := q.QueryRowContext(ctx, "SELECT engine, created_version, created_ts FROM hsops_engine").Scan(&m.Engine, &m.CreatedVersion, &m.CreatedTS)
	switch {
	case err == sql.ErrNoRows:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read hsops_engine: %w", err)
	}
	// Marks written before rollbacks were recorded lack the columns.
	has, err := s.hasColumn(ctx, q, "hsops_engine", "rolled_back_from")
	if err != nil || !has {
		return &m, err
	}
	var from, to, ts sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT rolled_back_from, rolled_back_to, rolled_back_ts FROM hsops_engine").Scan(&from, &to, &ts); err != nil {
		return nil, fmt.Errorf("read hsops_engine: %w", err)
	}
	m.RolledBackFrom, m.RolledBackTo, m.RolledBackTS = int(from.Int64), int(to.Int64), ts.Int64
	return &m, nil
}

// RecordRollback records on the mark a rollback from one version to
// another at ts (Unix milliseconds), adding the columns to a mark written
// before they existed.
func (s Store) RecordRollback(ctx context.Context, q db.Querier, from, to int, ts int64) error {
	has, err := s.hasColumn(ctx, q, "hsops_engine", "rolled_back_from")
	if err != nil {
		return err
	}
	if !has {
		for _, col := range []string{"rolled_back_from INTEGER", "rolled_back_to INTEGER", "rolled_back_ts BIGINT"} {
			if _, err := q.ExecContext(ctx, "ALTER TABLE hsops_engine ADD COLUMN "+col); err != nil {
				return fmt.Errorf("update hsops_engine: %w", err)
			}
		}
	}
	if _, err := q.ExecContext(ctx, s.rebind("UPDATE hsops_engine SET rolled_back_from = ?, rolled_back_to = ?, rolled_back_ts = ?"), from, to, ts); err != nil {
		return fmt.Errorf("update hsops_engine: %w", err)
	}
	return nil
}

// hasColumn reports whether a table has a column, from the catalog (a
// SELECT * would leave PostgreSQL a cached plan that a new column breaks).
// Names are written in the query, which then needs no argument: the zero
// Store asks PostgreSQL's catalog first, then SQLite's.
func (s Store) hasColumn(ctx context.Context, q db.Querier, table, column string) (bool, error) {
	lit := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	pg := "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = " + lit(table) + " AND column_name = " + lit(column)
	lite := "SELECT count(*) FROM pragma_table_info(" + lit(table) + ") WHERE name = " + lit(column)
	var queries []string
	switch s.engine {
	case db.Postgres:
		queries = []string{pg}
	case db.SQLite:
		queries = []string{lite}
	default:
		queries = []string{pg, lite}
	}
	var err error
	for _, query := range queries {
		var n int
		if err = q.QueryRowContext(ctx, query).Scan(&n); err == nil {
			return n > 0, nil
		}
	}
	return false, fmt.Errorf("read the columns of %s: %w", table, err)
}

// Updates lists the pending background updates in the order the scheduler
// considers them (ordering, then name).
func (s Store) Updates(ctx context.Context, q db.Querier) ([]Update, error) {
	rows, err := q.QueryContext(ctx, "SELECT update_name, ordering, depends_on, progress_json FROM background_updates ORDER BY ordering, update_name")
	if err != nil {
		return nil, fmt.Errorf("read background_updates: %w", err)
	}
	defer rows.Close()
	var out []Update
	for rows.Next() {
		var u Update
		var dep sql.NullString
		if err := rows.Scan(&u.Name, &u.Ordering, &dep, &u.Progress); err != nil {
			return nil, err
		}
		u.DependsOn = dep.String
		out = append(out, u)
	}
	return out, rows.Err()
}

// Progress reads an update's progress_json; queued is false when the update
// is not in the queue. With lock (PostgreSQL), the row stays locked until q's
// transaction ends, so that a second runner waits for this batch and then
// sees the progress it saved.
func (s Store) Progress(ctx context.Context, q db.Querier, name string, lock bool) (progress string, queued bool, err error) {
	query := "SELECT progress_json FROM background_updates WHERE update_name = ?"
	if lock && s.engine == db.Postgres {
		query += " FOR UPDATE"
	}
	err = q.QueryRowContext(ctx, s.rebind(query), name).Scan(&progress)
	switch {
	case err == sql.ErrNoRows:
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("read the progress of %q: %w", name, err)
	}
	return progress, true, nil
}

// SetVersion records the schema version and whether deltas reached it
// (false: the database is as the version's snapshot made it).
func (s Store) SetVersion(ctx context.Context, q db.Querier, version int, upgraded bool) error {
	if _, err := q.ExecContext(ctx, "DELETE FROM schema_version"); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if _, err := q.ExecContext(ctx, s.rebind("INSERT INTO schema_version (version, upgraded) VALUES (?, ?)"), version, upgraded); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return nil
}

// SetCompat records the compat version.
func (s Store) SetCompat(ctx context.Context, q db.Querier, compat int) error {
	if _, err := q.ExecContext(ctx, "DELETE FROM schema_compat_version"); err != nil {
		return fmt.Errorf("set compat version: %w", err)
	}
	if _, err := q.ExecContext(ctx, s.rebind("INSERT INTO schema_compat_version (compat_version) VALUES (?)"), compat); err != nil {
		return fmt.Errorf("set compat version: %w", err)
	}
	return nil
}

// RecordDelta records an applied delta; file is "<V>/<file name>".
func (s Store) RecordDelta(ctx context.Context, q db.Querier, version int, file string) error {
	if _, err := q.ExecContext(ctx, s.rebind("INSERT INTO applied_schema_deltas (version, file) VALUES (?, ?)"), version, file); err != nil {
		return fmt.Errorf("record delta %s: %w", file, err)
	}
	return nil
}

// ForgetDeltasAbove removes the records of the deltas of every version
// above version (a rollback to it).
func (s Store) ForgetDeltasAbove(ctx context.Context, q db.Querier, version int) error {
	if _, err := q.ExecContext(ctx, s.rebind("DELETE FROM applied_schema_deltas WHERE version > ?"), version); err != nil {
		return fmt.Errorf("update applied_schema_deltas: %w", err)
	}
	return nil
}

// SetMark marks a database as created by the engine m.Engine.
func (s Store) SetMark(ctx context.Context, q db.Querier, m Mark) error {
	if _, err := q.ExecContext(ctx, s.rebind("INSERT INTO hsops_engine (engine, created_version, created_ts) VALUES (?, ?, ?)"),
		m.Engine, m.CreatedVersion, m.CreatedTS); err != nil {
		return fmt.Errorf("mark the database: %w", err)
	}
	return nil
}

// LowerMark lowers the mark's created version to version when it is above
// (a rollback below the version the database was created at).
func (s Store) LowerMark(ctx context.Context, q db.Querier, version int) error {
	if _, err := q.ExecContext(ctx, s.rebind("UPDATE hsops_engine SET created_version = ? WHERE created_version > ?"), version, version); err != nil {
		return fmt.Errorf("update hsops_engine: %w", err)
	}
	return nil
}

// Enqueue adds an update to the queue unless one of that name is queued
// already (which is left as it is); queued reports whether it was added.
// An empty DependsOn is stored as NULL and an empty Progress as "{}".
func (s Store) Enqueue(ctx context.Context, q db.Querier, u Update) (queued bool, err error) {
	var dep any
	if u.DependsOn != "" {
		dep = u.DependsOn
	}
	progress := u.Progress
	if progress == "" {
		progress = "{}"
	}
	res, err := q.ExecContext(ctx, s.rebind(`INSERT INTO background_updates (update_name, progress_json, depends_on, ordering)
		SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM background_updates WHERE update_name = ?)`),
		u.Name, progress, dep, u.Ordering, u.Name)
	if err != nil {
		return false, fmt.Errorf("queue background update %q: %w", u.Name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("queue background update %q: %w", u.Name, err)
	}
	return n > 0, nil
}

// SaveProgress records an update's progress_json.
func (s Store) SaveProgress(ctx context.Context, q db.Querier, name, progress string) error {
	if _, err := q.ExecContext(ctx, s.rebind("UPDATE background_updates SET progress_json = ? WHERE update_name = ?"), progress, name); err != nil {
		return fmt.Errorf("save the progress of %q: %w", name, err)
	}
	return nil
}

// Dequeue removes an update from the queue (it is done, or no longer
// needed); an update not queued is not an error.
func (s Store) Dequeue(ctx context.Context, q db.Querier, name string) error {
	if _, err := q.ExecContext(ctx, s.rebind("DELETE FROM background_updates WHERE update_name = ?"), name); err != nil {
		return fmt.Errorf("remove %q from the queue: %w", name, err)
	}
	return nil
}
