package rollback

import (
	"context"
	"fmt"
	"testing"
	"time"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
	"hsops/schema/engine"
)

const benchRows = 200000

// filled68 makes a database at schema 68 holding benchRows events with an
// edge, a membership (in the three membership tables), a push action, a
// receipt and a forward extremity each: the tables the reverses rebuild or
// alter. Set-based, so setup is quick.
func filled68(b *testing.B, e db.Engine) *db.DB {
	b.Helper()
	ctx := context.Background()
	d := dbtest.New(b, e).Open(b)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 68}); err != nil {
		b.Fatal(err)
	}
	series := fmt.Sprintf("generate_series(1, %d) AS g(x)", benchRows)
	boolean := "FALSE"
	if e == db.SQLite {
		series = fmt.Sprintf("(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT x FROM c) AS g", benchRows)
		boolean = "0"
	}
	for _, q := range []string{
		"INSERT INTO rooms (room_id, is_public, creator, room_version) VALUES ('!r:example.org', " + boolean + ", '@u:example.org', '10')",
		"INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, processed, outlier, depth, origin_server_ts, sender) SELECT x, x, '$e' || x, 'm.room.member', '!r:example.org', " + boolean + ", " + boolean + ", x, x, '@u' || x || ':example.org' FROM " + series,
		"INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) SELECT '$e' || x, '$e' || (x - 1), '!r:example.org', " + boolean + " FROM " + series,
		"INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership) SELECT '$e' || x, '@u' || x || ':example.org', '@u' || x || ':example.org', '!r:example.org', 'join' FROM " + series,
		"INSERT INTO current_state_events (event_id, room_id, type, state_key, membership) SELECT '$e' || x, '!r:example.org', 'm.room.member', '@u' || x || ':example.org', 'join' FROM " + series,
		"INSERT INTO local_current_membership (room_id, user_id, event_id, membership) SELECT '!r:example.org', '@u' || x || ':example.org', '$e' || x, 'join' FROM " + series,
		"INSERT INTO event_push_actions (room_id, event_id, user_id, actions, stream_ordering, notif, highlight) SELECT '!r:example.org', '$e' || x, '@u' || x || ':example.org', '[]', x, 1, 0 FROM " + series,
		"INSERT INTO receipts_linearized (stream_id, room_id, receipt_type, user_id, event_id, data) SELECT x, '!r:example.org', 'm.read', '@u' || x || ':example.org', '$e' || x, '{}' FROM " + series,
		"INSERT INTO event_forward_extremities (event_id, room_id) SELECT '$e' || x, '!r:example.org' FROM " + series + " WHERE x % 100 = 0",
	} {
		if _, err := d.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return d
}

// BenchmarkRollback measures rolling a filled database back from 83 to 68
// (every reverse, in one transaction), against the reference measured in
// the same run: upgrading the same rows from 68 to 83 (the deltas, without
// their background updates).
func BenchmarkRollback(b *testing.B) {
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		b.Run(string(e), func(b *testing.B) {
			ctx := context.Background()
			var up, down time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := filled68(b, e)
				t0 := time.Now()
				if _, err := engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
					b.Fatal(err)
				}
				up += time.Since(t0)
				r := &schema.Runner{DB: d, Registry: engine.Schema().Updates, Env: schema.Env{Engine: e, ServerName: "example.org"}}
				if err := r.RunAll(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 = time.Now()
				if _, err := Engine().Apply(ctx, d, Options{Target: 68, AllowDataLoss: true}); err != nil {
					b.Fatal(err)
				}
				down += time.Since(t0)
				b.StopTimer()
				d.Close()
			}
			b.ReportMetric(down.Seconds()/float64(b.N), "rollback-s")
			b.ReportMetric(up.Seconds()/float64(b.N), "upgrade-s")
			b.ReportMetric(down.Seconds()/up.Seconds(), "ratio")
		})
	}
}
