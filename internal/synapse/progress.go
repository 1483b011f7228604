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

// walks are the background updates whose work Estimate can count: Synapse's
// own, by name.
var walks = map[string]walk{
	"populate_stats_process_rooms": {"rooms", "room_id", "last_room_id"},
	"populate_stats_process_users": {"users", "name", "last_user_id"},
}

// Estimate is the work of a pending Synapse background update from its
// progress_json and the size of the table it walks: the items left and the
// total. An index-building update is one item. ok is false when the update
// is not one Estimate knows.
func Estimate(ctx context.Context, d *db.DB, name, progress string) (left, total int64, ok bool) {
	if isIndex(name) {
		return 1, 1, true
	}
	w, known := walks[name]
	if !known {
		return 0, 0, false
	}
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(w.table)).Scan(&total); err != nil {
		return 0, 0, false
	}
	left, ok = w.left(ctx, d, progress)
	return left, total, ok
}

// Remaining is the items left of a pending Synapse background update, as
// Estimate counts them, without its total.
func Remaining(ctx context.Context, d *db.DB, name, progress string) (left int64, ok bool) {
	if isIndex(name) {
		return 1, true
	}
	w, known := walks[name]
	if !known {
		return 0, false
	}
	return w.left(ctx, d, progress)
}

// left counts the rows the walk has not reached, after the value its
// progress_json saved.
func (w walk) left(ctx context.Context, d *db.DB, progress string) (int64, bool) {
	var p map[string]any
	_ = json.Unmarshal([]byte(progress), &p)
	last := ""
	if v, has := p[w.key]; has {
		last = fmt.Sprint(v)
	}
	var left int64
	q := d.Rebind("SELECT count(*) FROM " + db.QuoteIdent(w.table) + " WHERE " + db.QuoteIdent(w.column) + " > ?")
	if err := d.QueryRowContext(ctx, q, last).Scan(&left); err != nil {
		return 0, false
	}
	return left, true
}

// isIndex reports whether an update builds an index (by Synapse's naming).
func isIndex(name string) bool {
	return strings.HasSuffix(name, "_idx") || strings.HasSuffix(name, "_index") || strings.Contains(name, "_idx_")
}
