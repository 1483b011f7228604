package porter

import (
	"context"
	"fmt"
	"strings"

	"hsops/internal/db"
)

// Strategy is how a table is ported.
type Strategy string

// The strategies, as Synapse's porter has them.
const (
	// AppendOnly tables resume from port_from_sqlite3's rowids.
	AppendOnly Strategy = "append-only"
	// Recopy tables are emptied and copied again on every run.
	Recopy Strategy = "re-copy"
	// Ignored tables are emptied on the target and not copied (derived or
	// transient data).
	Ignored Strategy = "ignored"
	// Search is event_search: FTS on SQLite, tsvector on PostgreSQL.
	Search Strategy = "search"
	// DirectoryPos is user_directory_stream_pos: one row with a NULL
	// position, so that the user directory is rebuilt.
	DirectoryPos Strategy = "directory-position"
)

// appendOnly are Synapse's APPEND_ONLY_TABLES (those that still exist).
var appendOnly = map[string]bool{
	"event_auth": true, "event_edges": true, "event_json": true, "event_search": true, "event_to_state_groups": true,
	"events": true, "ex_outlier_stream": true, "local_media_repository": true, "local_media_repository_thumbnails": true,
	"presence_stream": true, "push_rules_stream": true, "received_transactions": true, "redactions": true, "rejections": true,
	"remote_media_cache": true, "remote_media_cache_thumbnails": true, "room_memberships": true, "rooms": true,
	"state_events": true, "state_group_edges": true, "state_groups": true, "state_groups_state": true,
	"stream_ordering_to_exterm": true, "un_partial_stated_event_stream": true, "users": true,
}

// ignored are Synapse's IGNORED_TABLES: the user directory (rebuilt by a
// background update), UI-auth sessions (transient) and worker locks (none
// can be held while the porter runs).
var ignored = map[string]bool{
	"user_directory": true, "user_directory_search": true, "user_directory_search_pos": true,
	"users_who_share_private_rooms": true, "users_in_public_rooms": true,
	"ui_auth_sessions": true, "ui_auth_sessions_credentials": true, "ui_auth_sessions_ips": true,
	"worker_read_write_locks_mode": true, "worker_read_write_locks": true,
}

// never are bookkeeping tables the porter does not copy: the schema state
// of the target is its own, and the port bookkeeping and the engine's mark
// belong to each side.
var never = map[string]bool{
	"schema_version": true, "applied_schema_deltas": true, "port_from_sqlite3": true,
	"hsops_engine": true, "hsops_port": true, "hsops_port_tables": true, "hsops_port_deferred": true,
}

// ftsShadowSuffixes are the shadow tables of FTS3/4/5 virtual tables.
var ftsShadowSuffixes = []string{"_content", "_segments", "_segdir", "_docsize", "_stat", "_data", "_idx", "_config"}

// Table is one table of the work set.
type Table struct {
	Name     string
	Strategy Strategy
	// Columns are the source columns copied (event_search: special).
	Columns []Column
	// Refs are the work-set tables it references by foreign key.
	Refs []string
	// What measure found: the progress recorded for the table, the rows
	// already in the target and the rows this run has to copy.
	fwd, bwd           int64
	already, remaining int64
	// freeze: a re-copied table that no other table's foreign key points
	// at during the copy, emptied again in its copy's transaction so that
	// COPY FREEZE can write its rows.
	freeze bool
	// keep: a re-copied table found the same on both sides
	// (KeepUnchanged), with the comparison's result; it is neither emptied
	// nor copied.
	keep bool
	kept VerifyResult
}

// Column is a source column and the target type it converts to.
type Column struct {
	// Name is the target's column name; Source the SQLite one (they differ
	// in case only: PostgreSQL folds unquoted names to lower case).
	Name   string
	Source string
	// TargetType is PostgreSQL's type name (format_type).
	TargetType string
	kind       kind
	bin        binEnc
}

// sourceTables lists the SQLite tables and virtual tables.
func sourceTables(ctx context.Context, d *db.DB) (tables map[string]string, err error) {
	rows, err := d.QueryContext(ctx, "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		return nil, fmt.Errorf("list SQLite tables: %w", err)
	}
	defer rows.Close()
	tables = map[string]string{}
	for rows.Next() {
		var name, sql string
		if err := rows.Scan(&name, &sql); err != nil {
			return nil, err
		}
		tables[name] = sql
	}
	return tables, rows.Err()
}

// isDerived reports source-only tables that are fine to leave behind:
// SQLite's internals and FTS shadow tables.
func isDerived(name string, all map[string]string) bool {
	if strings.HasPrefix(name, "sqlite_") {
		return true
	}
	for _, suf := range ftsShadowSuffixes {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if sql, exists := all[base]; exists && strings.Contains(strings.ToUpper(sql), "VIRTUAL TABLE") {
				return true
			}
		}
	}
	return false
}

// foreignKeys reads the target's foreign-key graph: table -> referenced
// tables (self references left out).
func foreignKeys(ctx context.Context, d *db.DB) (map[string][]string, error) {
	rows, err := d.QueryContext(ctx, `SELECT DISTINCT c.relname, r.relname FROM pg_constraint con
		JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class r ON r.oid = con.confrelid
		WHERE con.contype = 'f' AND c.relnamespace = current_schema()::regnamespace AND c.oid <> r.oid`)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var t, ref string
		if err := rows.Scan(&t, &ref); err != nil {
			return nil, err
		}
		out[t] = append(out[t], ref)
	}
	return out, rows.Err()
}

// targetColumns reads a PostgreSQL table's columns and types.
func targetColumns(ctx context.Context, d *db.DB, table string) (map[string]string, error) {
	rows, err := d.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace AND a.attnum > 0 AND NOT a.attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		out[strings.ToLower(name)] = name + "\x00" + typ
	}
	return out, rows.Err()
}
