package porter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/sequences"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

func port(t *testing.T, src string, tgt config.Database, mutate ...func(*Options)) (*Result, error) {
	t.Helper()
	// Every table loaded from empty has its indexes and keys dropped for
	// the copy, however small.
	o := Options{SQLitePath: src, Target: tgt, ServerName: "example.org", Jobs: 2, BatchSize: 500, Verify: true, deferMin: 1}
	for _, m := range mutate {
		m(&o)
	}
	return Run(context.Background(), o)
}

func mustPort(t *testing.T, src string, tgt config.Database, mutate ...func(*Options)) *Result {
	t.Helper()
	res, err := port(t, src, tgt, mutate...)
	if err != nil {
		t.Fatalf("port: %v", err)
	}
	return res
}

func copied(res *Result, table string) int64 {
	for _, t := range res.Tables {
		if t.Name == table {
			return t.Copied
		}
	}
	return -1
}

func assertExact(t *testing.T, res *Result) {
	t.Helper()
	verified := 0
	for _, tr := range res.Tables {
		if tr.Verify == nil {
			continue
		}
		verified++
		if !tr.Verify.Match {
			t.Errorf("%s differs: %s", tr.Name, tr.Verify.Detail)
		}
	}
	if verified < 40 {
		t.Errorf("only %d tables verified", verified)
	}
}

func count(t *testing.T, d *db.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := d.QueryRow(d.Rebind(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestPort_EngineDatabaseIsExact(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 20, Rooms: 5, Messages: 2000, Backfilled: 3, Seed: 1})
	tgt := pgtest.NewDatabase(t)
	res := mustPort(t, src, tgt.Config)
	if !res.CreatedSchema || res.Mode != "engine" || res.SchemaVersion != 83 {
		t.Errorf("got created=%v mode=%s schema=%d", res.CreatedSchema, res.Mode, res.SchemaVersion)
	}
	assertExact(t, res)
	s, d := openSQLite(t, src), openPG(t, tgt.Config)
	// Booleans are booleans, bytea is bytes, backfilled events came over.
	if n := count(t, d, "SELECT count(*) FROM events WHERE outlier = false AND processed = true"); n != count(t, s, "SELECT count(*) FROM events") {
		t.Errorf("booleans: %d events with outlier=false", n)
	}
	var filter []byte
	if err := d.QueryRow("SELECT filter_json FROM user_filters WHERE user_id = 'user1'").Scan(&filter); err != nil || string(filter) != `{"room":{"timeline":{"limit":20}}}` {
		t.Errorf("bytea: got %q, %v", filter, err)
	}
	if n := count(t, d, "SELECT count(*) FROM events WHERE stream_ordering < 0"); n != 15 {
		t.Errorf("backfilled events: %d, want 15", n)
	}
	// Search still finds the messages.
	want := count(t, s, "SELECT count(*) FROM event_search WHERE event_search MATCH 'value:coffee'")
	got := count(t, d, "SELECT count(*) FROM event_search WHERE vector @@ to_tsquery('english', 'coffee')")
	if want == 0 || got != want {
		t.Errorf("search for coffee: %d on PostgreSQL, %d on SQLite", got, want)
	}
	if err := sequences.Check(context.Background(), d); err != nil {
		t.Errorf("sequences after the port: %v", err)
	}
}

func TestPort_SnapshotsMoveOnlyNewRows(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 10, Rooms: 3, Messages: 600, Seed: 2})
	tgt := pgtest.NewDatabase(t)
	first := mustPort(t, src, tgt.Config)
	assertExact(t, first)

	// The homeserver runs on: new events, one of them backfilled.
	addEvents(t, src, 25)
	old := &store.Event{RoomID: "!room1:example.org", Type: "m.room.message", Sender: "@user2:example.org", Backfilled: true,
		PrevEvents: []string{}, Content: map[string]any{"msgtype": "m.text", "body": "from the past"}, OriginServerTS: 1600000000000}
	s := openSQLite(t, src)
	persist(t, s, old)
	s.Close()

	second := mustPort(t, src, tgt.Config)
	if !second.Resumed {
		t.Error("the second run did not resume")
	}
	if n := copied(second, "events"); n != 26 {
		t.Errorf("second run copied %d events, want 26 (25 new + 1 backfilled)", n)
	}
	if n := copied(second, "event_json"); n != 26 {
		t.Errorf("second run copied %d event_json rows, want 26", n)
	}
	if n := copied(second, "state_groups"); n != 0 {
		t.Errorf("second run copied %d state groups, want 0", n)
	}
	assertExact(t, second)
	d := openPG(t, tgt.Config)
	if n := count(t, d, "SELECT count(*) FROM events WHERE event_id = $1 AND stream_ordering < 0", old.EventID); n != 1 {
		t.Errorf("the backfilled event is missing")
	}
	third := mustPort(t, src, tgt.Config)
	if n := copied(third, "events"); n != 0 {
		t.Errorf("a third run copied %d events, want 0", n)
	}
}

// The Synapse mode: the source is not an engine database and the target is
// a schema prepared beforehand (here by the engine, standing in for Synapse).
func TestPort_SynapseModeIntoPreparedSchema(t *testing.T) {
	ctx := context.Background()
	src := engineSource(t, gen.Params{Users: 8, Rooms: 2, Messages: 300, Backfilled: 2, Seed: 3})
	s, _ := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": src}}, db.Options{})
	if _, err := s.Exec("DROP TABLE hsops_engine"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tgt := pgtest.NewDatabase(t)
	d := openPG(t, tgt.Config)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("DROP TABLE hsops_engine"); err != nil {
		t.Fatal(err)
	}
	res := mustPort(t, src, tgt.Config)
	if res.Mode != "synapse" || res.CreatedSchema {
		t.Errorf("got mode %s created %v", res.Mode, res.CreatedSchema)
	}
	assertExact(t, res)
}

// A copy of the real Synapse v1.98 database: the source checks pass, and an
// empty target is refused with the hint to prepare it with Synapse.
func TestPort_SynapseFixtureNeedsAPreparedTarget(t *testing.T) {
	src := filepath.Join(t.TempDir(), "homeserver.db")
	data, err := os.ReadFile(fixturePath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tgt := pgtest.NewDatabase(t)
	_, err = port(t, src, tgt.Config, func(o *Options) { o.ServerName = "localhost"; o.ConfigPath = "/etc/pg.yaml" })
	want := "nothing was written: prepare it with Synapse v1.98.x (schema 83): update_synapse_database --database-config /etc/pg.yaml, then run the same command again (or port with that release's own synapse_port_db)"
	if !errors.Is(err, ErrTarget) || fault.HintOf(err) != want {
		t.Fatalf("got %v (hint %q), want the target refused with the Synapse hint", err, fault.HintOf(err))
	}
	if strings.Contains(err.Error(), "source refused") {
		t.Fatalf("the source checks failed: %v", err)
	}
	assertEmpty(t, tgt.Config)
}

func fixturePath() string {
	return filepath.Join("..", "..", "testdata", "shared", "fixtures", "synapse-1.98-sqlite", "homeserver.db")
}

func assertEmpty(t *testing.T, cfg config.Database) {
	t.Helper()
	d := openPG(t, cfg)
	c, err := catalog.Dump(context.Background(), d, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Lines) != 0 {
		t.Errorf("the refused target was written: %v", c.Lines[:min(5, len(c.Lines))])
	}
}

func TestPort_KeepsRowsWithNULCharacters(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 3, Rooms: 1, Messages: 20, Seed: 4})
	s := openSQLite(t, src)
	if _, err := s.Exec("UPDATE event_json SET json = 'nul:' || char(0) || ':end' WHERE event_id = (SELECT event_id FROM events WHERE type = 'm.room.message' LIMIT 1)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tgt := pgtest.NewDatabase(t)
	res := mustPort(t, src, tgt.Config)
	var nul int64
	for _, tr := range res.Tables {
		nul += tr.NUL
	}
	if nul != 1 {
		t.Errorf("NUL replacements: %d, want 1", nul)
	}
	assertExact(t, res)
	d := openPG(t, tgt.Config)
	if n := count(t, d, "SELECT count(*) FROM event_json WHERE json = 'nul:' || chr(65533) || ':end'"); n != 1 {
		t.Errorf("the row with a NUL was not kept with U+FFFD")
	}
}

// TestPort_CancelledMidCopyReturns cancels a port as its first batch is
// written: Run must return (the copy's reader and writer both stop) with
// the cancellation, and the next run finishes the port exactly.
func TestPort_CancelledMidCopyReturns(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 20, Rooms: 5, Messages: 3000, Seed: 2})
	tgt := pgtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{SQLitePath: src, Target: tgt.Config, ServerName: "example.org", Jobs: 2, BatchSize: 100,
			Progress: func(ev Event) {
				if ev.Type == "batch" {
					cancel()
				}
			}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want the cancellation", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a cancelled port did not return")
	}
	assertExact(t, mustPort(t, src, tgt.Config))
}

// TestPort_RefusesATargetLeftAtAnOlderSchema: a port made while the source
// was at schema 72, then the source upgraded to 83 (the homeserver restarted
// on it): the next port is refused with the reason, and the target is left
// as it was.
func TestPort_RefusesATargetLeftAtAnOlderSchema(t *testing.T) {
	ctx := context.Background()
	src := engineSourceAt(t, gen.Params{Users: 10, Rooms: 3, Messages: 300, Seed: 3}, 72)
	s := openSQLite(t, src)
	runUpdates := func() {
		t.Helper()
		r := &schema.Runner{DB: s, Registry: engine.Schema().Updates, Env: schema.Env{Engine: db.SQLite, ServerName: "example.org"}}
		if err := r.RunAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	runUpdates()
	tgt := pgtest.NewDatabase(t)
	if res := mustPort(t, src, tgt.Config); res.SchemaVersion != 72 {
		t.Fatalf("first port at schema %d, want 72", res.SchemaVersion)
	}
	if _, err := engine.Schema().Apply(ctx, s, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	runUpdates()
	s.Close()
	d := openPG(t, tgt.Config)
	before := dbtest.Contents(t, d)
	_, err := port(t, src, tgt.Config)
	if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "the source was upgraded since the last port: port into an empty database") {
		t.Fatalf("got %v, want the target refused", err)
	}
	if after := dbtest.Contents(t, d); after != before {
		t.Fatal("the refused port changed the target")
	}
}

// TestPort_PlanCountsTheWholeRun: before the first table is copied, the
// porter reports the rows of every table, so that progress and ETA are
// measured against the whole run from the start.
func TestPort_PlanCountsTheWholeRun(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 10, Rooms: 2, Messages: 300, Backfilled: 2, Seed: 5})
	tgt := pgtest.NewDatabase(t)
	for run := 1; run <= 2; run++ {
		var plan *Event
		pending := map[string]int64{}
		res := mustPort(t, src, tgt.Config, func(o *Options) {
			o.Progress = func(ev Event) {
				switch ev.Type {
				case "plan":
					plan = &ev
				case "pending":
					pending[ev.Table] = ev.Total
				case "table":
					if plan == nil {
						t.Errorf("run %d: table %s began before the plan", run, ev.Table)
					}
				}
			}
		})
		if plan == nil {
			t.Fatalf("run %d: no plan event", run)
		}
		var already, total int64
		for _, tr := range res.Tables {
			already += tr.Already
			total += tr.Already + tr.Copied + tr.Skipped
			if got := pending[tr.Name]; got != tr.Already+tr.Copied+tr.Skipped {
				t.Errorf("run %d: %s: pending said %d rows, the copy found %d", run, tr.Name, got, tr.Already+tr.Copied+tr.Skipped)
			}
		}
		if plan.Done != already || plan.Total != total {
			t.Errorf("run %d: plan said %d of %d, the run found %d of %d", run, plan.Done, plan.Total, already, total)
		}
	}
}

// TestPort_OneWriterAtATime: port_db takes the target's schema lock before
// it writes and holds it to the end, so a second port_db, update_database
// and a starting homeserver are refused naming it, and it is refused
// naming them.
func TestPort_OneWriterAtATime(t *testing.T) {
	ctx := context.Background()
	src := engineSource(t, gen.Params{Users: 5, Rooms: 2, Messages: 100, Seed: 9})
	tgt := pgtest.NewDatabase(t)
	d := openPG(t, tgt.Config)

	// Another writer holds the lock: nothing is written.
	lock, err := schema.AcquireLock(ctx, d, "update_database --run-background-updates")
	if err != nil {
		t.Fatal(err)
	}
	before := dbtest.Contents(t, d)
	_, err = port(t, src, tgt.Config)
	if fault.ClassOf(err) != fault.Locked || !strings.Contains(err.Error(), "held by update_database --run-background-updates (pid ") {
		t.Fatalf("got %v, want the port refused naming the holder", err)
	}
	if after := dbtest.Contents(t, d); after != before {
		t.Fatal("the refused port changed the target")
	}
	lock.Release()

	// While a port runs, the lock names it to the others.
	var (
		mu     sync.Mutex
		during error
	)
	mustPort(t, src, tgt.Config, func(o *Options) {
		o.Progress = func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			if e.Type == "table" && during == nil {
				during = schema.CheckLock(ctx, d)
			}
		}
	})
	if fault.ClassOf(during) != fault.Locked || !strings.Contains(during.Error(), "held by port_db (pid ") {
		t.Fatalf("during the port the lock said %v, want held by port_db", during)
	}
	// Done, the lock is free again.
	if err := schema.CheckLock(ctx, d); err != nil {
		t.Fatalf("after the port: %v", err)
	}
}

// TestPort_SearchRowsWithoutTheirEventSkipped: as Synapse's porter, a search
// row whose event is not in events is not ported; it is counted.
func TestPort_SearchRowsWithoutTheirEventSkipped(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 3, Rooms: 1, Messages: 40, Seed: 6})
	s := openSQLite(t, src)
	if _, err := s.Exec(`INSERT INTO event_search (event_id, room_id, sender, key, value)
		VALUES ('$gone', '!room1:example.org', '@user1:example.org', 'content.body', 'an orphan search row')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tgt := pgtest.NewDatabase(t)
	res := mustPort(t, src, tgt.Config, func(o *Options) { o.Verify = false })
	for _, tr := range res.Tables {
		if tr.Name == "event_search" && tr.Skipped != 1 {
			t.Errorf("event_search: %d rows skipped, want 1", tr.Skipped)
		}
	}
	d := openPG(t, tgt.Config)
	if n := count(t, d, "SELECT count(*) FROM event_search WHERE event_id = '$gone'"); n != 0 {
		t.Errorf("the orphan search row was ported")
	}
	if n, want := count(t, d, "SELECT count(*) FROM event_search"), count(t, openSQLite(t, src), "SELECT count(*) FROM event_search")-1; n != want {
		t.Errorf("event_search: %d rows, want %d", n, want)
	}
}
