package engine

import (
	"fmt"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
)

// seed68 writes a small homeserver's worth of rows into a database at schema
// 68: users, a room with events, memberships, edges (one of them dangling),
// push actions, a thread, filters and profiles.
func seed68(t *testing.T, d *db.DB) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := d.Exec(d.Rebind(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		exec("INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated) VALUES (?, 'x', 1, 0, 0, 0)", "@"+u+":example.org")
		exec("INSERT INTO profiles (user_id, displayname) VALUES (?, ?)", u, u)
		exec("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, 1, ?)", u, []byte(`{"room":{}}`))
	}
	exec("INSERT INTO rooms (room_id, is_public, creator, room_version) VALUES ('!r:example.org', ?, '@alice:example.org', '10')", true)
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("$e%d", i)
		typ, stateKey := "m.room.message", any(nil)
		if i == 1 {
			typ, stateKey = "m.room.member", "@alice:example.org"
		}
		exec(`INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, processed, outlier, depth, origin_server_ts, sender)
			VALUES (?, ?, ?, ?, '!r:example.org', ?, ?, ?, ?, '@alice:example.org')`, i, i, id, typ, true, false, i, 1000+i)
		exec("INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) VALUES (?, '!r:example.org', '{}', '{}', 3)", id)
		if i > 1 {
			exec("INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES (?, ?, '!r:example.org', ?)", id, fmt.Sprintf("$e%d", i-1), false)
		}
		if stateKey != nil {
			exec("INSERT INTO state_events (event_id, room_id, type, state_key) VALUES (?, '!r:example.org', ?, ?)", id, typ, stateKey)
		}
	}
	// A backfilled event has a negative stream ordering.
	exec(`INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, processed, outlier, depth, sender)
		VALUES (-1, 0, '$old', 'm.room.message', '!r:example.org', ?, ?, 0, '@bob:example.org')`, true, false)
	// An edge of an event the server does not have: the upgrade drops it.
	exec("INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES ('$missing', '$e5', '!r:example.org', ?)", false)
	exec("INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership) VALUES ('$e1', '@alice:example.org', '@alice:example.org', '!r:example.org', 'join')")
	exec("INSERT INTO current_state_events (event_id, room_id, type, state_key, membership) VALUES ('$e1', '!r:example.org', 'm.room.member', '@alice:example.org', 'join')")
	exec("INSERT INTO local_current_membership (room_id, user_id, event_id, membership) VALUES ('!r:example.org', '@alice:example.org', '$e1', 'join')")
	exec("INSERT INTO event_push_actions (room_id, event_id, user_id, actions, topological_ordering, stream_ordering, notif, highlight) VALUES ('!r:example.org', '$e3', '@bob:example.org', '[\"notify\"]', 3, 3, 1, 0)")
	exec("INSERT INTO event_relations (event_id, relates_to_id, relation_type) VALUES ('$e3', '$e2', 'm.thread')")
	exec("INSERT INTO event_relations (event_id, relates_to_id, relation_type) VALUES ('$e4', '$e2', 'm.thread')")
	exec("INSERT INTO event_forward_extremities (event_id, room_id) VALUES ('$e5', '!r:example.org')")
	exec("INSERT INTO event_forward_extremities (event_id, room_id) VALUES ('$gone', '!r:example.org')")
	exec("INSERT INTO receipts_linearized (stream_id, room_id, receipt_type, user_id, event_id, data) VALUES (1, '!r:example.org', 'm.read', '@bob:example.org', '$e5', '{}')")
}

func TestUpgrade_KeepsAndBackfillsData(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Schema()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{Target: 68})
		seed68(t, d)
		// Stop at 77 so that the full_user_id back-fill runs as a background
		// update, then finish at 83 (78/01 and 78/02 finish it at upgrade time
		// when they run first).
		mustApply(t, s, d, schema.Options{Target: 77})
		runUpdates(t, s, d)
		mustApply(t, s, d, schema.Options{})
		runUpdates(t, s, d)

		checks := []struct {
			query string
			want  string
		}{
			{"SELECT full_user_id FROM profiles WHERE user_id = 'alice'", "@alice:example.org"},
			{"SELECT full_user_id FROM user_filters WHERE user_id = 'bob'", "@bob:example.org"},
			{"SELECT CAST(event_stream_ordering AS TEXT) FROM room_memberships WHERE event_id = '$e1'", "1"},
			{"SELECT CAST(event_stream_ordering AS TEXT) FROM current_state_events WHERE event_id = '$e1'", "1"},
			{"SELECT CAST(event_stream_ordering AS TEXT) FROM local_current_membership WHERE event_id = '$e1'", "1"},
			{"SELECT thread_id FROM event_push_actions WHERE event_id = '$e3'", "main"},
			{"SELECT latest_event_id FROM threads WHERE thread_id = '$e2'", "$e4"},
			{"SELECT state_key FROM events WHERE event_id = '$e1'", "@alice:example.org"},
			{"SELECT CAST(count(*) AS TEXT) FROM event_edges", "4"},
			{"SELECT CAST(count(*) AS TEXT) FROM event_forward_extremities", "1"},
			{"SELECT CAST(count(*) AS TEXT) FROM events", "6"},
			{"SELECT CAST(MIN(stream_ordering) AS TEXT) FROM events", "-1"},
			{"SELECT event_id FROM receipts_linearized WHERE user_id = '@bob:example.org'", "$e5"},
		}
		for _, c := range checks {
			var got string
			if err := d.QueryRow(c.query).Scan(&got); err != nil {
				t.Errorf("%s: %v", c.query, err)
				continue
			}
			if got != c.want {
				t.Errorf("%s: got %q, want %q", c.query, got, c.want)
			}
		}
		var n int
		if err := d.QueryRow("SELECT count(*) FROM background_updates").Scan(&n); err != nil || n != 0 {
			t.Errorf("pending updates left: %d (%v)", n, err)
		}
	})
}
