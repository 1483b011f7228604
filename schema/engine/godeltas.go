package engine

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
	"hsops/schema/bookkeeping"
)

// engineGoDeltas are the engine's deltas that SQL alone cannot express.
func goDeltas() map[string]schema.GoDelta {
	return map[string]schema.GoDelta{
		"main/delta/73/10_update_sqlite_fts_tokenizer.go":      {Create: rebuildSearchWithPorter},
		"main/delta/78/01_validate_and_update_profiles.go":     {Upgrade: finishFullUserID("profiles", "populate_full_user_id_profiles")},
		"main/delta/78/02_validate_and_update_user_filters.go": {Upgrade: finishFullUserID("user_filters", "populate_full_user_id_user_filters")},
	}
}

// rebuildSearchWithPorter switches SQLite's event_search to the porter
// tokenizer (stemming: "running" finds "run"), as Synapse's
// 73/10_update_sqlite_fts4_tokenizer.py does.
func rebuildSearchWithPorter(ctx context.Context, tx *sql.Tx, env schema.Env) error {
	if env.Engine != db.SQLite {
		return nil
	}
	return RebuildSearch(ctx, tx, "porter")
}

// RebuildSearch recreates SQLite's FTS5 event_search with a tokenizer (""
// for FTS5's default). An FTS table's tokenizer is fixed at creation, so
// the table is rebuilt; rows keep their rowids, which port_db relies on to
// resume.
func RebuildSearch(ctx context.Context, tx *sql.Tx, tokenizer string) error {
	option := ""
	if tokenizer != "" {
		option = ", tokenize = '" + tokenizer + "'"
	}
	for _, q := range []string{
		`CREATE VIRTUAL TABLE event_search_rebuilt USING fts5 (
    event_id UNINDEXED, room_id UNINDEXED, sender UNINDEXED, key UNINDEXED, value` + option + `
)`,
		`INSERT INTO event_search_rebuilt (rowid, event_id, room_id, sender, key, value)
    SELECT rowid, event_id, room_id, sender, key, value FROM event_search`,
		`DROP TABLE event_search`,
		`ALTER TABLE event_search_rebuilt RENAME TO event_search`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// finishFullUserID completes a full_user_id back-fill at upgrade time, as
// Synapse's 78/01 and 78/02 do: fill what the background update has not yet
// reached, drop the update, and (PostgreSQL) validate the NOT NULL check.
func finishFullUserID(table, update string) func(context.Context, *sql.Tx, schema.Env) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env) error {
		if err := backfillFullUserID(ctx, tx, env, table, nil, nil); err != nil {
			return err
		}
		if err := bookkeeping.New(env.Engine).Dequeue(ctx, tx, update); err != nil {
			return err
		}
		if env.Engine == db.Postgres {
			if _, err := tx.ExecContext(ctx, "ALTER TABLE "+table+" VALIDATE CONSTRAINT full_user_id_not_null"); err != nil {
				return err
			}
		}
		return nil
	}
}

// backfillFullUserID sets full_user_id = '@' || user_id || ':' || server
// for rows with user_id in (after, upTo] (nil is unbounded) that lack it.
func backfillFullUserID(ctx context.Context, tx *sql.Tx, env schema.Env, table string, after, upTo *string) error {
	cond, args := schema.KeyRange{After: after, UpTo: upTo}.Cond("user_id")
	where := "full_user_id IS NULL AND " + cond
	server := env.ServerName
	if server == "" {
		// Only look the server name up when a row needs it: an empty
		// table must not require a config that names the server.
		var missing int
		if err := tx.QueryRowContext(ctx, db.Rebind(env.Engine, "SELECT count(*) FROM "+table+" WHERE "+where), args...).Scan(&missing); err != nil {
			return err
		}
		if missing == 0 {
			return nil
		}
		var err error
		if server, err = serverName(ctx, tx, env); err != nil {
			return fmt.Errorf("back-fill %s.full_user_id: %w", table, err)
		}
	}
	q := "UPDATE " + table + " SET full_user_id = '@' || user_id || ':' || ? WHERE " + where
	_, err := tx.ExecContext(ctx, db.Rebind(env.Engine, q), append([]any{server}, args...)...)
	return err
}

// ErrNoServerName means a step needs the server name and neither the
// configuration nor the users table gives it.
var ErrNoServerName = fault.New(fault.Config, "server_name is needed: add server_name to the config", "add server_name to <config>")

// serverName is the configured server name, or the domain of the users.
func serverName(ctx context.Context, q db.Querier, env schema.Env) (string, error) {
	if env.ServerName != "" {
		return env.ServerName, nil
	}
	var name string
	err := q.QueryRowContext(ctx, "SELECT name FROM users ORDER BY name LIMIT 1").Scan(&name)
	if err == nil {
		if i := strings.Index(name, ":"); i >= 0 {
			return name[i+1:], nil
		}
	}
	if err != nil && err != sql.ErrNoRows {
		return "", err
	}
	return "", ErrNoServerName
}
