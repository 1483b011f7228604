package synapse

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"hsops/internal/db"
)

// walk is how a known background update walks a table: in order of column,
// saving the last value it did under key in its progress_json.
type walk struct{ table, column, key string }

// walks are the background updates whose work Estimate can count.
var walks = map[string]walk{
	"populate_stats_process_rooms": {"rooms", "room_id", "last_room_id"},
	"populate_stats_process_users": {"users", "name", "last_user_id"},
	// The stand-in Synapse's (testdata/fakesynapse).
	"room_event_counts_populate": {"rooms", "room_id", "last_room_id"},
}

// Estimate is the work of a pending Synapse background update from its
// progress_json and the size of the table it walks: the items left and the
// total. An index-building update is one item. ok is false when the update
// is not one Estimate knows.
func Estimate(ctx context.Context, d *db.DB, name, progress string) (left, total int64, ok bool) {
	if w, known := walks[name]; known {
		var p map[string]any
		_ = json.Unmarshal([]byte(progress), &p)
		last := ""
		if v, has := p[w.key]; has {
			last = fmt.Sprint(v)
		}
		table, col := db.QuoteIdent(w.table), db.QuoteIdent(w.column)
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&total); err != nil {
			return 0, 0, false
		}
		if err := d.QueryRowContext(ctx, d.Rebind("SELECT count(*) FROM "+table+" WHERE "+col+" > ?"), last).Scan(&left); err != nil {
			return 0, 0, false
		}
		return left, total, true
	}
	if strings.HasSuffix(name, "_idx") || strings.HasSuffix(name, "_index") || strings.Contains(name, "_idx_") {
		return 1, 1, true
	}
	return 0, 0, false
}
