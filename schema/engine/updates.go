package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"hsops/internal/db"
	"hsops/schema"
)

// updates registers the handlers of every background update the engine's
// deltas enqueue, and the on-demand jobs.
func updates() *schema.Registry {
	r := schema.NewRegistry()
	index := func(name string, spec schema.IndexSpec) { r.Register(name, schema.Handler{Index: &spec}) }

	r.Register("state_group_edges_unique_idx", schema.Handler{Index: &schema.IndexSpec{Name: "state_group_edges_unique_idx", Table: "state_group_edges",
		Columns: []string{"state_group", "prev_state_group"}, Unique: true, Replaces: "state_group_edges_idx"}, Explain: explainDuplicateEdges})
	r.Register("event_edges_drop_invalid_event_edges", schema.KeyBackfill{
		Table: "event_edges", Key: "event_id",
		Apply:  deleteOrphans("event_edges"),
		Finish: validateConstraint("event_edges", "event_edges_event_id_fkey"),
	}.Handler())
	index("event_edges_replace_index", schema.IndexSpec{Name: "event_edges_event_id_prev_event_id_idx", Table: "event_edges",
		Columns: []string{"event_id", "prev_event_id"}, Unique: true, Replaces: "ev_edges_id",
		ReplacesConstraint: "event_edges_event_id_prev_event_id_room_id_is_state_key"})
	r.Register("events_populate_state_key_rejections", schema.KeyBackfill{
		Table: "events", Key: "stream_ordering", Numeric: true,
		Apply: populateStateKeyRejections,
	}.Handler())
	index("receipts_linearized_unique_index", schema.IndexSpec{Name: "receipts_linearized_unique_index", Table: "receipts_linearized",
		Columns: []string{"room_id", "receipt_type", "user_id"}, Where: "thread_id IS NULL", Unique: true,
		ReplacesConstraint: "receipts_linearized_uniqueness"})
	index("receipts_graph_unique_index", schema.IndexSpec{Name: "receipts_graph_unique_index", Table: "receipts_graph",
		Columns: []string{"room_id", "receipt_type", "user_id"}, Where: "thread_id IS NULL", Unique: true,
		ReplacesConstraint: "receipts_graph_uniqueness"})
	r.Register("threads_backfill", schema.KeyBackfill{
		Table: "event_relations", Key: "relates_to_id", Filter: "relation_type = 'm.thread'",
		Apply: backfillThreads,
	}.Handler())
	index("events_jump_to_date_index", schema.IndexSpec{Name: "events_jump_to_date_idx", Table: "events",
		Columns: []string{"room_id", "origin_server_ts"}, Where: "NOT outlier"})
	index("room_membership_user_room_index", schema.IndexSpec{Name: "room_membership_user_room_idx", Table: "room_memberships",
		Columns: []string{"user_id", "room_id"}})
	for _, t := range []string{"room_memberships", "current_state_events", "local_current_membership"} {
		r.Register(t+"_stream_ordering_backfill", schema.KeyBackfill{Table: t, Key: "event_id", Apply: backfillStreamOrdering(t)}.Handler())
		index(t+"_stream_ordering_idx", schema.IndexSpec{Name: t + "_stream_ordering_idx", Table: t, Columns: []string{"event_stream_ordering"}})
	}
	index("profiles_full_user_id_key_idx", schema.IndexSpec{Name: "profiles_full_user_id_key", Table: "profiles",
		Columns: []string{"full_user_id"}, Unique: true})
	index("full_users_filters_unique_idx", schema.IndexSpec{Name: "full_users_unique_idx", Table: "user_filters",
		Columns: []string{"full_user_id", "filter_id"}, Unique: true})
	for _, u := range []struct{ name, table string }{
		{"populate_full_user_id_profiles", "profiles"}, {"populate_full_user_id_user_filters", "user_filters"},
	} {
		r.Register(u.name, schema.KeyBackfill{Table: u.table, Key: "user_id",
			Apply: fullUserIDBackfill(u.table), Finish: validateConstraint(u.table, "full_user_id_not_null")}.Handler())
	}
	r.Register("event_push_backfill_thread_id", schema.Handler{Batch: drainBatch("event_push_actions", "thread_id IS NULL", "thread_id = 'main'")})
	r.Register("event_push_actions_thread_id", schema.Handler{Batch: validateBatch("event_push_actions", "event_push_actions_thread_id")})
	r.Register("event_forward_extremities_event_id_foreign_key_constraint_update", schema.KeyBackfill{
		Table: "event_forward_extremities", Key: "event_id",
		Apply:  deleteOrphans("event_forward_extremities"),
		Finish: validateConstraint("event_forward_extremities", "event_forward_extremities_event_id"),
	}.Handler())
	index("room_account_data_index_room_id", schema.IndexSpec{Name: "room_account_data_room_id", Table: "room_account_data",
		Columns: []string{"room_id"}})

	// On-demand jobs (the admin API's start_job).
	r.Register("populate_stats_process_rooms", schema.Handler{Batch: populateRoomStats})
	r.AddJob("populate_stats_process_rooms", schema.PendingUpdate{Name: "populate_stats_process_rooms", Progress: "{}"})
	r.Unsupported("regenerate_directory", "the hsops engine has no user directory tables to regenerate")
	return r
}

// deleteOrphans deletes a key range's rows of table whose event_id names
// no event.
func deleteOrphans(table string) func(context.Context, *sql.Tx, schema.Env, schema.KeyRange) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env, kr schema.KeyRange) error {
		where, args := kr.Cond("event_id")
		_, err := tx.ExecContext(ctx, db.Rebind(env.Engine, `DELETE FROM `+table+` WHERE `+where+`
			AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = `+table+`.event_id)`), args...)
		return err
	}
}

// populateStateKeyRejections copies each event's state key and rejection
// reason into events.
func populateStateKeyRejections(ctx context.Context, tx *sql.Tx, env schema.Env, kr schema.KeyRange) error {
	where, args := kr.Cond("stream_ordering")
	_, err := tx.ExecContext(ctx, db.Rebind(env.Engine, `UPDATE events SET
		state_key = (SELECT se.state_key FROM state_events AS se WHERE se.event_id = events.event_id),
		rejection_reason = (SELECT r.reason FROM rejections AS r WHERE r.event_id = events.event_id)
		WHERE `+where), args...)
	return err
}

// backfillThreads records each thread of a key range with its latest
// event.
func backfillThreads(ctx context.Context, tx *sql.Tx, env schema.Env, kr schema.KeyRange) error {
	where, args := kr.Cond("r.relates_to_id")
	_, err := tx.ExecContext(ctx, db.Rebind(env.Engine, `INSERT INTO threads (room_id, thread_id, latest_event_id, topological_ordering, stream_ordering)
		SELECT e.room_id, r.relates_to_id, e.event_id, e.topological_ordering, e.stream_ordering
		FROM event_relations AS r JOIN events AS e ON e.event_id = r.event_id
		WHERE r.relation_type = 'm.thread' AND `+where+`
		  AND e.stream_ordering = (
		    SELECT MAX(e2.stream_ordering) FROM event_relations AS r2 JOIN events AS e2 ON e2.event_id = r2.event_id
		    WHERE r2.relation_type = 'm.thread' AND r2.relates_to_id = r.relates_to_id)
		ON CONFLICT (room_id, thread_id) DO UPDATE SET latest_event_id = excluded.latest_event_id,
		  topological_ordering = excluded.topological_ordering, stream_ordering = excluded.stream_ordering`), args...)
	return err
}

// backfillStreamOrdering fills table's event_stream_ordering from its
// events.
func backfillStreamOrdering(table string) func(context.Context, *sql.Tx, schema.Env, schema.KeyRange) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env, kr schema.KeyRange) error {
		where, args := kr.Cond("event_id")
		_, err := tx.ExecContext(ctx, db.Rebind(env.Engine, `UPDATE `+table+` SET event_stream_ordering =
			(SELECT e.stream_ordering FROM events AS e WHERE e.event_id = `+table+`.event_id)
			WHERE event_stream_ordering IS NULL AND `+where), args...)
		return err
	}
}

// fullUserIDBackfill fills table's full_user_id (see backfillFullUserID).
func fullUserIDBackfill(table string) func(context.Context, *sql.Tx, schema.Env, schema.KeyRange) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env, kr schema.KeyRange) error {
		return backfillFullUserID(ctx, tx, env, table, kr.After, kr.UpTo)
	}
}

// validateConstraint validates a NOT VALID constraint (PostgreSQL only:
// SQLite databases got it when their table was rebuilt).
func validateConstraint(table, constraint string) func(context.Context, *sql.Tx, schema.Env) error {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env) error {
		if env.Engine != db.Postgres {
			return nil
		}
		_, err := tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", table, constraint))
		return err
	}
}

// validateBatch is a one-batch update that validates a constraint.
func validateBatch(table, constraint string) func(context.Context, *sql.Tx, schema.Env, json.RawMessage, int) (schema.BatchResult, error) {
	v := validateConstraint(table, constraint)
	return func(ctx context.Context, tx *sql.Tx, env schema.Env, _ json.RawMessage, _ int) (schema.BatchResult, error) {
		if err := v(ctx, tx, env); err != nil {
			return schema.BatchResult{}, err
		}
		return schema.BatchResult{Items: 1, Done: true}, nil
	}
}

// drainBatch updates up to size rows matching cond per batch until none
// is left. Its progress is empty: the condition itself says what is left.
func drainBatch(table, cond, set string) func(context.Context, *sql.Tx, schema.Env, json.RawMessage, int) (schema.BatchResult, error) {
	return func(ctx context.Context, tx *sql.Tx, env schema.Env, _ json.RawMessage, size int) (schema.BatchResult, error) {
		id := "rowid"
		if env.Engine == db.Postgres {
			id = "ctid"
		}
		q := fmt.Sprintf("UPDATE %[1]s SET %[3]s WHERE %[4]s IN (SELECT %[4]s FROM %[1]s WHERE %[2]s LIMIT %[5]d)", table, cond, set, id, size)
		res, err := tx.ExecContext(ctx, q)
		if err != nil {
			return schema.BatchResult{}, err
		}
		n, _ := res.RowsAffected()
		return schema.BatchResult{Items: int(n), Done: n < int64(size), Progress: struct{}{}}, nil
	}
}

// roomsProgress is populate_stats_process_rooms's progress: every room up to
// Last is done.
type roomsProgress struct {
	Last *string `json:"last,omitempty"`
}

// populateRoomStats recomputes room_stats_state from the current state, a
// room at a time (Synapse's populate_stats_process_rooms job, for the
// columns the engine keeps).
func populateRoomStats(ctx context.Context, tx *sql.Tx, env schema.Env, progress json.RawMessage, size int) (schema.BatchResult, error) {
	var p roomsProgress
	if len(progress) > 0 {
		if err := json.Unmarshal(progress, &p); err != nil {
			return schema.BatchResult{}, err
		}
	}
	q := "SELECT room_id FROM rooms"
	var args []any
	if p.Last != nil {
		q += " WHERE room_id > ?"
		args = append(args, *p.Last)
	}
	q += fmt.Sprintf(" ORDER BY room_id LIMIT %d", size)
	rows, err := tx.QueryContext(ctx, db.Rebind(env.Engine, q), args...)
	if err != nil {
		return schema.BatchResult{}, err
	}
	var rooms []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			rows.Close()
			return schema.BatchResult{}, err
		}
		rooms = append(rooms, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return schema.BatchResult{}, err
	}
	for _, room := range rooms {
		if err := RefreshRoomStats(ctx, tx, env.Engine, room); err != nil {
			return schema.BatchResult{}, err
		}
	}
	if len(rooms) < size {
		return schema.BatchResult{Items: len(rooms), Done: true}, nil
	}
	last := rooms[len(rooms)-1]
	return schema.BatchResult{Items: len(rooms), Progress: roomsProgress{Last: &last}}, nil
}

// RefreshRoomStats rewrites a room's room_stats_state row from its current
// state events.
func RefreshRoomStats(ctx context.Context, tx *sql.Tx, e db.Engine, room string) error {
	fields := map[string]string{
		"m.room.name": "name", "m.room.canonical_alias": "alias", "m.room.join_rules": "join_rule",
		"m.room.history_visibility": "history_visibility", "m.room.encryption": "algorithm",
		"m.room.avatar": "url", "m.room.guest_access": "guest_access", "m.room.topic": "topic",
	}
	vals := map[string]*string{}
	rows, err := tx.QueryContext(ctx, db.Rebind(e, `SELECT c.type, j.json FROM current_state_events AS c
		JOIN event_json AS j ON j.event_id = c.event_id WHERE c.room_id = ? AND c.state_key = ''`), room)
	if err != nil {
		return err
	}
	var roomType *string
	federatable := true
	for rows.Next() {
		var typ, raw string
		if err := rows.Scan(&typ, &raw); err != nil {
			rows.Close()
			return err
		}
		var ev struct {
			Content map[string]any `json:"content"`
		}
		if json.Unmarshal([]byte(raw), &ev) != nil {
			continue
		}
		if typ == "m.room.create" {
			if t, ok := ev.Content["type"].(string); ok {
				roomType = &t
			}
			if f, ok := ev.Content["m.federate"].(bool); ok {
				federatable = f
			}
			continue
		}
		if key, ok := fields[typ]; ok {
			if s, ok := ev.Content[key].(string); ok {
				vals[typ] = &s
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(e, "DELETE FROM room_stats_state WHERE room_id = ?"), room); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, db.Rebind(e, `INSERT INTO room_stats_state (room_id, name, canonical_alias, join_rules,
		history_visibility, encryption, avatar, guest_access, is_federatable, topic, room_type)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		room, vals["m.room.name"], vals["m.room.canonical_alias"], vals["m.room.join_rules"], vals["m.room.history_visibility"],
		vals["m.room.encryption"], vals["m.room.avatar"], vals["m.room.guest_access"], federatable, vals["m.room.topic"], roomType)
	return err
}
