package schema

import (
	"context"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
)

// BenchmarkCreate measures creating a database at 83 from the snapshot (what
// every new homeserver does once), and creating one at 68 and upgrading it
// through every delta, on each engine. The database itself is made outside
// the timer (for PostgreSQL: CREATE DATABASE from template0).
func BenchmarkCreate(b *testing.B) {
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		b.Run("fresh83/"+string(e), func(b *testing.B) {
			s := Engine()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := dbtest.New(b, e).Open(b)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), d, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("68to83/"+string(e), func(b *testing.B) {
			s := Engine()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := dbtest.New(b, e).Open(b)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), d, Options{Target: 68}); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Apply(context.Background(), d, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
