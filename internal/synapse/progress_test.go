package synapse

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"hsops/internal/db"
)

// roomsDB is a database with four rooms and a queue holding
// populate_stats_process_rooms.
func roomsDB(t *testing.T) *db.DB {
	t.Helper()
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "hs.db"), db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.ExecContext(ctx, `CREATE TABLE rooms (room_id TEXT PRIMARY KEY);
		INSERT INTO rooms VALUES ('!a:x'), ('!b:x'), ('!c:x'), ('!d:x');
		CREATE TABLE background_updates (update_name TEXT NOT NULL, progress_json TEXT NOT NULL, depends_on TEXT, ordering INT NOT NULL DEFAULT 0);
		INSERT INTO background_updates (update_name, progress_json) VALUES ('populate_stats_process_rooms', '{"last_room_id": "!a:x"}')`); err != nil {
		t.Fatal(err)
	}
	d.Label = "master"
	return d
}

func TestEstimate(t *testing.T) {
	ctx := context.Background()
	d := roomsDB(t)
	for _, c := range []struct {
		name, progress string
		left, total    int64
		ok             bool
	}{
		{"populate_stats_process_rooms", `{}`, 4, 4, true},
		{"populate_stats_process_rooms", `{"last_room_id": "!b:x"}`, 2, 4, true},
		{"populate_stats_process_rooms", `{"last_room_id": "!d:x"}`, 0, 4, true},
		{"state_group_edges_unique_idx", `{}`, 1, 1, true},
		{"some_update_hsops_does_not_know", `{}`, 0, 0, false},
	} {
		left, total, ok := Estimate(ctx, d, c.name, c.progress)
		if left != c.left || total != c.total || ok != c.ok {
			t.Errorf("Estimate(%s, %s) = %d, %d, %v; want %d, %d, %v", c.name, c.progress, left, total, ok, c.left, c.total, c.ok)
		}
		left, ok = Remaining(ctx, d, c.name, c.progress)
		if left != c.left || ok != c.ok {
			t.Errorf("Remaining(%s, %s) = %d, %v; want %d, %v", c.name, c.progress, left, ok, c.left, c.ok)
		}
	}
}

// TestEstimator_FollowsTheRunsEvents: the work is counted when the update
// starts (from the progress_json the run last polled, else from its row),
// grows with each batch line, and is set again from each progress_json the
// run's poll reports.
func TestEstimator_FollowsTheRunsEvents(t *testing.T) {
	d := roomsDB(t)
	var got []Event
	e := &estimator{ctx: context.Background(), dbs: []*db.DB{d}, out: func(ev Event) { got = append(got, ev) }, work: map[string]*work{}}
	const name = "populate_stats_process_rooms"
	key := "master\x00" + name
	step := func(ev Event, wantDone, wantTotal int64) {
		t.Helper()
		ev.Database, ev.Update = "master", name
		e.event(ev)
		last := got[len(got)-1]
		if last.Done != wantDone || last.Total != wantTotal {
			t.Errorf("%s: done %d of %d, want %d of %d", ev.Type, last.Done, last.Total, wantDone, wantTotal)
		}
	}
	// Not polled yet: its row says one room is done.
	step(Event{Type: "update_start"}, 1, 4)
	step(Event{Type: "update_batch", Items: 1}, 2, 4)
	// The poll's progress_json is read at most once a second.
	e.work[key].measured = time.Now().Add(-2 * time.Second)
	step(Event{Type: "update_progress", Progress: `{"last_room_id": "!c:x"}`}, 3, 4)
	step(Event{Type: "update_progress", Progress: `{"last_room_id": "!d:x"}`}, 3, 4)
	step(Event{Type: "update_done"}, 4, 4)

	// A start the run had polled: its progress_json, not the row's.
	got = nil
	step(Event{Type: "update_start", Progress: `{"last_room_id": "!b:x"}`}, 2, 4)
}
