package engine

import (
	"context"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
)

// BenchmarkCreate measures creating a database at 83 from the snapshot (what
// every new homeserver does once), and creating one at 68 and upgrading it
// through every delta, on each engine. The database itself is made outside
// the timer (for PostgreSQL: CREATE DATABASE from template0).
func BenchmarkCreate(b *testing.B) {
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		b.Run("fresh83/"+string(e), func(b *testing.B) {
			s := Schema()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := dbtest.New(b, e).Open(b)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), d, schema.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("68to83/"+string(e), func(b *testing.B) {
			s := Schema()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := dbtest.New(b, e).Open(b)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), d, schema.Options{Target: 68}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Apply(context.Background(), d, schema.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// millionRows fills a database at schema 76 with 1,000,000 profiles (whose
// full_user_id the 77 back-fill computes) and 1,000,000 room memberships (for
// the room_membership_user_room_idx index build), set-based so that setup is
// quick on both engines.
func millionRows(b *testing.B, e db.Engine) *db.DB {
	b.Helper()
	ctx := context.Background()
	d := dbtest.New(b, e).Open(b)
	s := Schema()
	if _, err := s.Apply(ctx, d, schema.Options{Target: 76}); err != nil {
		b.Fatal(err)
	}
	series := "generate_series(1, 1000000) AS g(x)"
	if e == db.SQLite {
		series = "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) SELECT x FROM c) AS g"
	}
	for _, q := range []string{
		"DELETE FROM background_updates",
		"INSERT INTO profiles (user_id, displayname) SELECT 'user' || x, 'User ' || x FROM " + series,
		"INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership) SELECT '$ev' || x, '@user' || (x % 50000) || ':example.org', '@s:example.org', '!room' || (x % 1000) || ':example.org', 'join' FROM " + series,
	} {
		if _, err := d.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	if e == db.Postgres {
		for _, t := range []string{"profiles", "room_memberships"} {
			if _, err := d.ExecContext(ctx, "VACUUM ANALYZE "+t); err != nil {
				b.Fatal(err)
			}
		}
	}
	return d
}

// BenchmarkBackgroundUpdates compares a back-fill and an index build run as
// background updates (batch by batch, progress saved with each batch) with
// the same work done by one statement (the floor). Run it with
//
//	go test ./schema -run XXX -bench BackgroundUpdates -benchtime 3x
func BenchmarkBackgroundUpdates(b *testing.B) {
	ctx := context.Background()
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		d := millionRows(b, e)
		s := Schema()
		reset := func(b *testing.B, q ...string) {
			b.Helper()
			for _, stmt := range q {
				if _, err := d.ExecContext(ctx, stmt); err != nil {
					b.Fatalf("%s: %v", stmt, err)
				}
			}
		}
		runUpdate := func(b *testing.B, name string) {
			b.Helper()
			reset(b, "DELETE FROM background_updates", "INSERT INTO background_updates (update_name, progress_json) VALUES ('"+name+"', '{}')")
			b.StartTimer()
			r := &schema.Runner{DB: d, Registry: s.Updates, Env: schema.Env{Engine: e, ServerName: "example.org"}}
			if err := r.RunAll(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
		}
		// On PostgreSQL the back-fill ends by validating the NOT VALID check
		// that delta 77/01 adds; the direct floor validates it too.
		clear := []string{"UPDATE profiles SET full_user_id = NULL"}
		validate := []string{}
		if e == db.Postgres {
			clear = []string{
				"ALTER TABLE profiles DROP CONSTRAINT IF EXISTS full_user_id_not_null",
				"UPDATE profiles SET full_user_id = NULL",
				"ALTER TABLE profiles ADD CONSTRAINT full_user_id_not_null CHECK (full_user_id IS NOT NULL) NOT VALID",
			}
			validate = []string{"ALTER TABLE profiles VALIDATE CONSTRAINT full_user_id_not_null"}
		}
		b.Run("backfill/runner/"+string(e), func(b *testing.B) {
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				reset(b, clear...)
				runUpdate(b, "populate_full_user_id_profiles")
			}
			b.ReportMetric(1e6, "rows/op")
		})
		b.Run("backfill/direct/"+string(e), func(b *testing.B) {
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				reset(b, clear...)
				b.StartTimer()
				reset(b, append([]string{"UPDATE profiles SET full_user_id = '@' || user_id || ':' || 'example.org' WHERE full_user_id IS NULL"}, validate...)...)
				b.StopTimer()
			}
			b.ReportMetric(1e6, "rows/op")
		})
		b.Run("index/runner/"+string(e), func(b *testing.B) {
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				reset(b, "DROP INDEX IF EXISTS room_membership_user_room_idx")
				runUpdate(b, "room_membership_user_room_index")
			}
			b.ReportMetric(1e6, "rows/op")
		})
		b.Run("index/direct/"+string(e), func(b *testing.B) {
			b.StopTimer()
			// What the runner builds: the spec of room_membership_user_room_index.
			build := "CREATE INDEX IF NOT EXISTS room_membership_user_room_idx ON room_memberships (user_id, room_id)"
			if e == db.Postgres {
				build = "CREATE INDEX CONCURRENTLY room_membership_user_room_idx ON room_memberships (user_id, room_id)"
			}
			for i := 0; i < b.N; i++ {
				reset(b, "DROP INDEX IF EXISTS room_membership_user_room_idx")
				b.StartTimer()
				reset(b, build)
				b.StopTimer()
			}
			b.ReportMetric(1e6, "rows/op")
		})
	}
}
