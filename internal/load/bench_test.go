package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

// BenchmarkHTTPLoad runs the load generator against the engine (in this
// process, on loopback) on each engine, and, as the reference measured in
// the same run, the same sends made directly through the engine's store
// with the same concurrency: the ratio is what HTTP, JSON and
// authentication leave of the store's write rate.
//
//	go test ./internal/load -run XXX -bench HTTPLoad -benchtime 1x
func BenchmarkHTTPLoad(b *testing.B) {
	p := Params{SharedSecret: "s3cret", Users: 100, Rooms: 10, Members: 10, Messages: 10000, Reads: 2000, Searches: 500, Concurrency: 16}
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		b.Run(string(e), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				base, _ := startEngine(b, e)
				p.URL = base
				p.Prefix = fmt.Sprintf("b%d", i)
				rep, err := Run(context.Background(), p)
				if err != nil {
					b.Fatal(err)
				}
				direct := directSends(b, e, p)
				for _, ph := range rep.Phases {
					b.Logf("%-10s %6d req %8.1f req/s  p50 %6.1fms  p90 %6.1fms  p99 %6.1fms  max %6.1fms", ph.Name, ph.Requests, ph.PerSec, ph.P50ms, ph.P90ms, ph.P99ms, ph.MaxMs)
					switch ph.Name {
					case "send":
						b.ReportMetric(ph.PerSec, "send-req/s")
						b.ReportMetric(ph.P50ms, "send-p50-ms")
						b.ReportMetric(ph.P99ms, "send-p99-ms")
						b.ReportMetric(direct, "store-sends/s")
						b.ReportMetric(ph.PerSec/direct, "ratio")
					case "messages":
						b.ReportMetric(ph.PerSec, "messages-req/s")
						b.ReportMetric(ph.P99ms, "messages-p99-ms")
					case "search":
						b.ReportMetric(ph.PerSec, "search-req/s")
						b.ReportMetric(ph.P99ms, "search-p99-ms")
					}
				}
				b.Logf("reference: the same %d sends through the store directly: %.1f/s", p.Messages, direct)
			}
		})
	}
}

// directSends makes the rooms and members of p in a fresh database through
// the store, then times p.Messages sends with p.Concurrency goroutines.
func directSends(b *testing.B, e db.Engine, p Params) float64 {
	b.Helper()
	ctx := context.Background()
	d := dbtest.New(b, e).Open(b)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		b.Fatal(err)
	}
	st := store.New(d, "example.org", "master")
	users := make([]store.User, p.Users)
	for i := range users {
		id, err := st.RegisterUser(ctx, fmt.Sprintf("d%d", i), "", false, "")
		if err != nil {
			b.Fatal(err)
		}
		_, dev, err := st.Login(ctx, id, "", "")
		if err != nil {
			b.Fatal(err)
		}
		users[i] = store.User{ID: id, DeviceID: dev}
	}
	rooms := make([]string, p.Rooms)
	member := func(r, k int) int { return (r + k) % p.Users }
	for r := range rooms {
		room, err := st.CreateRoom(ctx, users[r%p.Users], store.RoomOptions{Public: true, Name: fmt.Sprint(r)})
		if err != nil {
			b.Fatal(err)
		}
		rooms[r] = room
		for k := 1; k < p.Members; k++ {
			if _, err := st.SetMembership(ctx, users[member(r, k)].ID, users[member(r, k)].ID, room, "join"); err != nil {
				b.Fatal(err)
			}
		}
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		fail error
	)
	t0 := time.Now()
	for w := 0; w < p.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				mu.Lock()
				stop := fail != nil
				mu.Unlock()
				if i >= p.Messages || stop {
					return
				}
				r := i % p.Rooms
				u := users[member(r, (i/p.Rooms)%p.Members)]
				_, err := st.Send(ctx, u, rooms[r], "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)}, fmt.Sprintf("d%d", i))
				if err != nil {
					mu.Lock()
					fail = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		b.Fatal(fail)
	}
	return float64(p.Messages) / time.Since(t0).Seconds()
}
