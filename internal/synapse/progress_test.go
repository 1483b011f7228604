package synapse

import (
	"context"
	"path/filepath"
	"testing"

	"hsops/internal/db"
)

func TestEstimate(t *testing.T) {
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, filepath.Join(t.TempDir(), "hs.db"), db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ExecContext(ctx, `CREATE TABLE rooms (room_id TEXT PRIMARY KEY);
		INSERT INTO rooms VALUES ('!a:x'), ('!b:x'), ('!c:x'), ('!d:x')`); err != nil {
		t.Fatal(err)
	}
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
	}
}
