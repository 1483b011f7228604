package rollback

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/schema"
	"hsops/schema/bookkeeping"
	"hsops/schema/engine"
)

// engineGoReverses are the reverses SQL alone cannot express, keyed by the
// path of their delta.
func engineGoReverses() map[string]GoReverse {
	return map[string]GoReverse{
		"main/delta/73/10_update_sqlite_fts_tokenizer.go": {
			Header: "-- Rebuild SQLite's event_search with its original tokenizer (no stemming); nothing to do on PostgreSQL.",
			Run:    rebuildSearchWithoutPorter,
		},
		"main/delta/74/03_membership_tables_event_stream_ordering.sql": {
			Header: `-- Drop event_stream_ordering from the three membership tables (on SQLite by rebuilding them: a column with a foreign key cannot be dropped).
-- drops: column room_memberships.event_stream_ordering (copied from events)
-- drops: column current_state_events.event_stream_ordering (copied from events)
-- drops: column local_current_membership.event_stream_ordering (copied from events)`,
			Run: dropColumns(map[string][]string{
				"room_memberships":         {"event_stream_ordering"},
				"current_state_events":     {"event_stream_ordering"},
				"local_current_membership": {"event_stream_ordering"},
			}),
		},
		"main/delta/78/01_validate_and_update_profiles.go": {
			Header: "-- Queue the profiles.full_user_id back-fill again and (PostgreSQL) make its NOT NULL check unvalidated, as at schema 77.\n-- queues: populate_full_user_id_profiles",
			Run:    unfinishFullUserID("profiles", "populate_full_user_id_profiles", 7703),
		},
		"main/delta/78/02_validate_and_update_user_filters.go": {
			Header: "-- Queue the user_filters.full_user_id back-fill again and (PostgreSQL) make its NOT NULL check unvalidated, as at schema 77.\n-- queues: populate_full_user_id_user_filters",
			Run:    unfinishFullUserID("user_filters", "populate_full_user_id_user_filters", 7704),
		},
	}
}

// rebuildSearchWithoutPorter undoes 73/10: SQLite's event_search gets the
// default tokenizer back. Rows keep their rowids.
func rebuildSearchWithoutPorter(ctx context.Context, tx *sql.Tx, env schema.Env) error {
	if env.Engine != db.SQLite {
		return nil
	}
	return engine.RebuildSearch(ctx, tx, "")
}

// unfinishFullUserID undoes 78/01 and 78/02, which finished a back-fill at
// upgrade time: the back-fill is queued again (it finds nothing left to
// fill and validates the check) and, on PostgreSQL, the check goes back to
// NOT VALID.
func unfinishFullUserID(table, update string, ordering int) func(context.Context, *sql.Tx, schema.Env) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env) error {
		_, err := bookkeeping.New(env.Engine).Enqueue(ctx, tx, schema.PendingUpdate{Name: update, Ordering: ordering, Progress: "{}"})
		if err != nil || env.Engine != db.Postgres {
			return err
		}
		for _, q := range []string{
			"ALTER TABLE " + table + " DROP CONSTRAINT full_user_id_not_null",
			"ALTER TABLE " + table + " ADD CONSTRAINT full_user_id_not_null CHECK (full_user_id IS NOT NULL) NOT VALID",
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
}

// dropColumns drops columns from tables: ALTER TABLE ... DROP COLUMN on
// PostgreSQL, a rebuild of the table on SQLite (see rebuildWithout).
func dropColumns(tables map[string][]string) func(context.Context, *sql.Tx, schema.Env) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env) error {
		for _, t := range sortedKeys(tables) {
			if env.Engine == db.SQLite {
				if err := rebuildWithout(ctx, tx, t, tables[t]); err != nil {
					return err
				}
				continue
			}
			for _, c := range tables[t] {
				if _, err := tx.ExecContext(ctx, "ALTER TABLE "+t+" DROP COLUMN "+c); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

var identRE = regexp.MustCompile(`^"?([A-Za-z_][A-Za-z0-9_]*)"?`)

// rebuildWithout drops columns from a SQLite table by rebuilding it, for
// columns ALTER TABLE DROP COLUMN refuses (foreign keys, uniqueness): SQLite's
// documented procedure, inside the caller's transaction. The table is
// recreated from its own definition minus the columns, its rows copied,
// and its indexes and triggers recreated. Tables that others reference are
// refused: dropping them would run their ON DELETE actions.
func rebuildWithout(ctx context.Context, tx *sql.Tx, table string, cols []string) error {
	create, err := unreferencedTable(ctx, tx, table)
	if err != nil {
		return err
	}
	items, keep, err := withoutColumns(table, create, cols)
	if err != nil {
		return err
	}
	objects, err := tableObjects(ctx, tx, table, cols)
	if err != nil {
		return err
	}
	tmp := table + "_hsops_rebuild"
	list := strings.Join(keep, ", ")
	stmts := []string{
		"CREATE TABLE " + tmp + " (\n    " + strings.Join(items, ",\n    ") + "\n)",
		"INSERT INTO " + tmp + " (" + list + ") SELECT " + list + " FROM " + table,
		"DROP TABLE " + table,
		"ALTER TABLE " + tmp + " RENAME TO " + table,
	}
	for _, o := range objects {
		stmts = append(stmts, o.sql)
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("rebuild %s: %w", table, err)
		}
	}
	return nil
}

// unreferencedTable returns a SQLite table's CREATE TABLE statement, and
// refuses a table another table references by foreign key.
func unreferencedTable(ctx context.Context, tx *sql.Tx, table string) (string, error) {
	var create string
	if err := tx.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&create); err != nil {
		return "", fmt.Errorf("rebuild %s: %w", table, err)
	}
	var referencedBy string
	err := tx.QueryRowContext(ctx, `SELECT m.name FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS fk
		WHERE m.type = 'table' AND fk."table" = ? AND m.name <> ? LIMIT 1`, table, table).Scan(&referencedBy)
	if err == nil {
		return "", fmt.Errorf("rebuild %s: table %s references it", table, referencedBy)
	}
	if err != sql.ErrNoRows {
		return "", fmt.Errorf("rebuild %s: %w", table, err)
	}
	return create, nil
}

// withoutColumns splits a CREATE TABLE statement into its column and
// constraint definitions, leaving out the columns cols: items are the
// definitions kept, keep the names of the columns kept. A constraint that
// uses a dropped column, or a column the table lacks, is an error.
func withoutColumns(table, create string, cols []string) (items, keep []string, err error) {
	open, closeIdx := strings.Index(create, "("), strings.LastIndex(create, ")")
	if open < 0 || closeIdx < open {
		return nil, nil, fmt.Errorf("rebuild %s: cannot read its definition", table)
	}
	drop := map[string]bool{}
	for _, c := range cols {
		drop[strings.ToLower(c)] = true
	}
	for _, item := range catalog.SplitTopLevel(catalog.StripComments(create[open+1 : closeIdx])) {
		m := identRE.FindStringSubmatch(item)
		name := ""
		if m != nil {
			name = strings.ToLower(m[1])
		}
		switch name {
		case "constraint", "unique", "check", "primary", "foreign":
			for c := range drop {
				if mentions(item, c) {
					return nil, nil, fmt.Errorf("rebuild %s: clause %q uses column %s", table, item, c)
				}
			}
			items = append(items, item)
		default:
			if drop[name] {
				delete(drop, name)
				continue
			}
			items = append(items, item)
			keep = append(keep, name)
		}
	}
	if len(drop) > 0 {
		return nil, nil, fmt.Errorf("rebuild %s: no column %s", table, strings.Join(sortedKeys(drop), ", "))
	}
	return items, keep, nil
}

// sqliteObject is an index or trigger of a table, with its SQL.
type sqliteObject struct{ name, sql string }

// tableObjects lists a table's indexes and triggers, which the rebuild
// recreates; one that uses a dropped column is an error.
func tableObjects(ctx context.Context, tx *sql.Tx, table string, cols []string) ([]sqliteObject, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var objects []sqliteObject
	for rows.Next() {
		var o sqliteObject
		if err := rows.Scan(&o.name, &o.sql); err != nil {
			return nil, err
		}
		objects = append(objects, o)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, o := range objects {
		for _, c := range cols {
			if mentions(o.sql, c) {
				return nil, fmt.Errorf("rebuild %s: %s uses column %s (drop it first)", table, o.name, c)
			}
		}
	}
	return objects, nil
}

// mentions reports whether SQL text uses an identifier as a whole word.
func mentions(text, ident string) bool {
	return regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(ident) + `\b`).MatchString(text)
}
