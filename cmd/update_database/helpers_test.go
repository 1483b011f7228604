package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
	"hsops/internal/testbin"
)

// buildTool puts this command (built by testbin, relinked only when its
// sources changed) into a temporary directory of the test, so that tests
// can run (and kill) the real binary.
func buildTool(t *testing.T) string {
	t.Helper()
	return testbin.Command(t, "", "hsops/cmd/update_database")
}

// seedForUpdates fills a database at schema 68 with enough rows that every
// background update the upgrade to 83 queues takes many small batches.
func seedForUpdates(t *testing.T, d *db.DB, n int) {
	t.Helper()
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(d.Rebind(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("INSERT INTO rooms (room_id, is_public, creator, room_version) VALUES ('!r:example.org', ?, '@u0:example.org', '10')", true)
	for i := 1; i <= n; i++ {
		ev := fmt.Sprintf("$ev%06d", i)
		user := fmt.Sprintf("@u%d:example.org", i%200)
		exec(`INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, processed, outlier, depth, origin_server_ts, sender)
			VALUES (?, ?, ?, 'm.room.member', '!r:example.org', ?, ?, ?, ?, ?)`, i, i, ev, true, false, i, 1000+i, user)
		exec("INSERT INTO state_events (event_id, room_id, type, state_key) VALUES (?, '!r:example.org', 'm.room.member', ?)", ev, user)
		exec("INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership) VALUES (?, ?, ?, '!r:example.org', 'join')", ev, user, user)
		if i > 1 {
			exec("INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES (?, ?, '!r:example.org', ?)", ev, fmt.Sprintf("$ev%06d", i-1), false)
		}
		exec("INSERT INTO event_push_actions (room_id, event_id, user_id, actions, stream_ordering, notif, highlight) VALUES ('!r:example.org', ?, ?, '[]', ?, 1, 0)", ev, user, i)
		if i%3 == 0 {
			exec("INSERT INTO event_relations (event_id, relates_to_id, relation_type) VALUES (?, ?, 'm.thread')", ev, fmt.Sprintf("$ev%06d", i-1))
		}
		exec("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)", i+1, i)
	}
	for u := 0; u < 200; u++ {
		user := fmt.Sprintf("@u%d:example.org", u)
		exec("INSERT INTO current_state_events (event_id, room_id, type, state_key, membership) VALUES (?, '!r:example.org', 'm.room.member', ?, 'join')", fmt.Sprintf("$ev%06d", n-199+u), user)
		exec("INSERT INTO local_current_membership (room_id, user_id, event_id, membership) VALUES ('!r:example.org', ?, ?, 'join')", user, fmt.Sprintf("$ev%06d", n-199+u))
		exec("INSERT INTO profiles (user_id, displayname) VALUES (?, ?)", fmt.Sprintf("u%d", u), user)
		exec("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, 1, ?)", fmt.Sprintf("u%d", u), []byte("{}"))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, dir string, dbc config.Database) string {
	t.Helper()
	var dbYAML string
	if dbc.IsSQLite() {
		dbYAML = fmt.Sprintf("database:\n  name: sqlite3\n  args:\n    database: %s\n", dbc.SQLitePath())
	} else {
		dbYAML = pgtest.Database{Config: dbc}.YAML()
	}
	p := filepath.Join(dir, fmt.Sprintf("hs-%d.yaml", time.Now().UnixNano()))
	cfg := "server_name: example.org\nbackground_updates:\n  background_update_duration_ms: 2\n  default_batch_size: 20\n  min_batch_size: 10\n" + dbYAML
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
