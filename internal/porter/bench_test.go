package porter

import (
	"context"
	"math"
	"testing"

	"hsops/internal/gen"
	"hsops/internal/pgtest"
)

// BenchmarkPort_BulkMeasures ports one generated database (20,000
// messages, about 165,000 rows) into a new database per iteration, with
// everything port_db does for a bulk load and then without each measure in
// turn, so that each is measured against the same source on the same
// server:
//
//	go test ./internal/porter -run XXX -bench BulkMeasures -benchtime 3x
//
// Against a server with durability on (HSOPS_TEST_PG_URL), the commit
// setting counts; the throwaway test cluster runs with fsync and
// synchronous_commit off anyway.
func BenchmarkPort_BulkMeasures(b *testing.B) {
	src := engineSource(b, gen.Params{Users: 500, Rooms: 50, Messages: 20000, Backfilled: 5, Seed: 31})
	for _, v := range []struct {
		name   string
		mutate func(*Options)
	}{
		{"all", func(*Options) {}},
		{"indexes-kept", func(o *Options) { o.deferMin = math.MaxInt64 }},
		{"no-freeze", func(o *Options) { o.noFreeze = true }},
		{"synchronous-commit-on", func(o *Options) { o.syncCommit = true }},
	} {
		b.Run(v.name, func(b *testing.B) {
			var rows int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tgt := pgtest.NewDatabase(b)
				o := Options{SQLitePath: src, Target: tgt.Config, ServerName: "example.org", Jobs: 2, BatchSize: 10000}
				v.mutate(&o)
				b.StartTimer()
				res, err := Run(context.Background(), o)
				if err != nil {
					b.Fatal(err)
				}
				rows = res.Rows
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
