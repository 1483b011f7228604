package synapse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakePython is the stand-in Synapse's interpreter (testdata/fakesynapse).
func fakePython(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "fakesynapse", "python")
}

// synapseDB makes a database that reads as Synapse's (no engine mark) at a
// schema version, with a little data, and a config file for it.
func synapseDB(t *testing.T, e db.Engine, version int, duplicates bool) (*db.DB, string) {
	t.Helper()
	ctx := context.Background()
	tg := dbtest.New(t, e)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: version, ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Generate(ctx, d, gen.Params{ServerName: "example.org", Users: 4, Rooms: 5, MembersPerRoom: 3, Messages: 30, Backfilled: 1, Seed: 1, TxSize: 1000}); err != nil {
		t.Fatal(err)
	}
	stmts := []string{"DROP TABLE hsops_engine"}
	if duplicates {
		stmts = append(stmts, "INSERT INTO state_group_edges SELECT * FROM state_group_edges WHERE state_group IN (SELECT state_group FROM state_group_edges ORDER BY state_group LIMIT 2)")
	}
	for _, s := range stmts {
		if _, err := d.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString("server_name: example.org\nreport_stats: false\nmacaroon_secret_key: s3cret\ndatabase:\n  name: " + tg.Config.Name + "\n  args:\n")
	keys := make([]string, 0, len(tg.Config.Args))
	for k := range tg.Config.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %q\n", k, tg.Config.Args[k])
	}
	cfg, err := config.Parse([]config.File{{Name: "homeserver.yaml", Data: []byte(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "homeserver.json")
	if err := WriteConfig(path, cfg, ConfigEdit{}); err != nil {
		t.Fatal(err)
	}
	ro, err := db.Open(ctx, tg.Config, db.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return ro, path
}

// abortGrace is the tests' Options.AbortGrace.
const abortGrace = 200 * time.Millisecond

func run(t *testing.T, d *db.DB, cfg string, env ...string) (*Result, error) {
	t.Helper()
	var events []Event
	res, err := Run(context.Background(), Options{
		Python: fakePython(t), Config: cfg, RunBackgroundUpdates: true, Databases: []*db.DB{d},
		Env: env, OnEvent: func(ev Event) { events = append(events, ev) },
		// The stand-in, like Synapse, never exits by itself once its
		// updates aborted: it is stopped after the grace, whatever its
		// length (the default, 2 s, is production's).
		AbortGrace: abortGrace,
	})
	if res != nil && (t.Failed() || testing.Verbose()) {
		t.Logf("output:\n%s", strings.Join(res.Tail, "\n"))
	}
	return res, err
}

func TestProbe(t *testing.T) {
	t.Parallel()
	r, err := Probe(context.Background(), fakePython(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "1.99.0" || r.Schema != 84 || r.Compat != 83 {
		t.Fatalf("got %+v", r)
	}
	_, err = Probe(context.Background(), "/bin/false")
	if !errors.Is(err, ErrNoSynapse) || fault.ClassOf(err) != fault.Config {
		t.Fatalf("a Python without Synapse: %v (class %v)", err, fault.ClassOf(err))
	}
}

func TestRun_TwoBackgroundUpdates(t *testing.T) {
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		d, cfg := synapseDB(t, e, 83, false)
		res, err := run(t, d, cfg, "FAKE_SYNAPSE_BATCH_SIZE=2", "FAKE_SYNAPSE_BATCH_MS=30")
		if err != nil {
			t.Fatal(err)
		}
		var deltas []string
		for _, dl := range res.Deltas {
			deltas = append(deltas, dl.Key)
			if !dl.Applied || dl.Millis < 0 {
				t.Errorf("delta %+v", dl)
			}
		}
		want := []string{"84/01_room_event_counts.sql", "84/02_events_sender_idx.sql." + string(e)}
		if !slices.Equal(deltas, want) {
			t.Errorf("deltas %v, want %v", deltas, want)
		}
		if b, a := res.Before[0], res.After[0]; b.Schema != 83 || a.Schema != 84 || a.Compat != 83 || len(a.Pending) != 0 {
			t.Errorf("before %+v after %+v", b, a)
		}
		if len(res.Updates) != 2 || res.Updates[0].Name != "populate_stats_process_rooms" || res.Updates[1].Name != "room_event_counts_room_id_idx" {
			t.Fatalf("updates %+v", res.Updates)
		}
		pop := res.Updates[0]
		// 5 rooms in batches of 2, then an empty batch that ends it.
		if !pop.Done || pop.Batches != 4 || pop.Items != 5 || pop.Millis <= 0 {
			t.Errorf("populate %+v", pop)
		}
		if !res.Updates[1].Done || res.Updates[1].Items != 1 {
			t.Errorf("index %+v", res.Updates[1])
		}
		if res.ExitCode != 0 || res.Failure != nil || res.SchemaMillis <= 0 || res.BackgroundMillis <= 0 {
			t.Errorf("result %+v", res)
		}
		var n int
		if err := d.QueryRow("SELECT count(*) FROM room_event_counts").Scan(&n); err != nil || n != 5 {
			t.Errorf("room_event_counts: %d rows, %v", n, err)
		}
	})
}

func TestRun_FailingDelta(t *testing.T) {
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		d, cfg := synapseDB(t, e, 83, false)
		res, err := run(t, d, cfg, "FAKE_SYNAPSE_FAIL_DELTA=84/01_room_event_counts.sql")
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("want a failure, got %v", err)
		}
		if f.Phase != "schema" || f.Delta != "84/01_room_event_counts.sql" || f.ExitCode != 1 || fault.ClassOf(err) != fault.Delta {
			t.Errorf("failure %+v", f)
		}
		if !strings.Contains(f.Cause, "fake_synapse_missing_table") {
			t.Errorf("cause %q", f.Cause)
		}
		if !strings.Contains(f.Fix, "84/01_room_event_counts.sql") {
			t.Errorf("fix %q", f.Fix)
		}
		if len(res.Deltas) != 1 || res.Deltas[0].Applied {
			t.Errorf("deltas %+v", res.Deltas)
		}
		if slices.Contains(res.After[0].Applied, "84/01_room_event_counts.sql") {
			t.Error("the failed delta is recorded")
		}
	})
}

func TestRun_FailingUpdateHangsAndIsStopped(t *testing.T) {
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		d, cfg := synapseDB(t, e, 83, false)
		res, err := run(t, d, cfg, "FAKE_SYNAPSE_FAIL_UPDATE=populate_stats_process_rooms")
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("want a failure, got %v", err)
		}
		if f.Phase != "background" || f.Update != "populate_stats_process_rooms" || !f.Stopped || fault.ClassOf(err) != fault.Update {
			t.Errorf("failure %+v", f)
		}
		if !strings.Contains(f.Cause, "fake_synapse_missing_table") {
			t.Errorf("cause %q", f.Cause)
		}
		if !res.Stopped || len(res.After[0].Pending) != 2 {
			t.Errorf("stopped %v, pending %+v", res.Stopped, res.After[0].Pending)
		}
		if len(res.Updates) != 1 || res.Updates[0].Failures != 5 || res.Updates[0].Done {
			t.Errorf("updates %+v", res.Updates)
		}
		if len(res.Deltas) != 2 {
			t.Errorf("deltas %+v", res.Deltas)
		}
	})
}

func TestRun_DuplicatedEdges(t *testing.T) {
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		d, cfg := synapseDB(t, e, 69, true)
		_, err := run(t, d, cfg)
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("want a failure, got %v", err)
		}
		if f.Update != "state_group_edges_unique_idx" || !f.Stopped {
			t.Errorf("failure %+v", f)
		}
		if !strings.Contains(f.Fix, "update_database repair state-group-edges --database-config <config>") {
			t.Errorf("fix %q", f.Fix)
		}
		wantCause := map[db.Engine]string{db.SQLite: "sqlite3.IntegrityError: UNIQUE constraint failed: state_group_edges.state_group", db.Postgres: `psycopg2.errors.UniqueViolation: could not create unique index "state_group_edges_unique_idx"`}[e]
		if !strings.Contains(f.Cause, wantCause) {
			t.Errorf("cause %q, want %q", f.Cause, wantCause)
		}
	})
}

func TestRun_WithoutBackgroundUpdates(t *testing.T) {
	t.Parallel()
	d, cfg := synapseDB(t, db.SQLite, 83, false)
	res, err := Run(context.Background(), Options{Python: fakePython(t), Config: cfg, Databases: []*db.DB{d}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deltas) != 2 || res.BackgroundMillis != 0 || len(res.Updates) != 0 || len(res.After[0].Pending) != 2 {
		t.Errorf("result %+v", res)
	}
}

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	files := []config.File{
		{Name: "a.yaml", Data: []byte("server_name: example.org\nmacaroon_secret_key: s3cret\ndatabase:\n  name: psycopg2\n  txn_limit: 10\n  args:\n    user: synapse\n    database: synapse\n    cp_min: 5\n")},
		{Name: "b.yaml", Data: []byte("report_stats: true\nlisteners: [{port: 8008, type: http}]\n")},
	}
	cfg, err := config.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.json")
	err = WriteConfig(path, cfg, ConfigEdit{
		Args: map[string]map[string]any{"master": {"database": nil, "dbname": "scratch"}},
		Set:  map[string]any{"report_stats": false},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	data, _ := os.ReadFile(path)
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	dbs := doc["database"].(map[string]any)
	args := dbs["args"].(map[string]any)
	if args["dbname"] != "scratch" || args["database"] != nil || args["cp_min"] != float64(5) || dbs["txn_limit"] != float64(10) {
		t.Errorf("database section %v", dbs)
	}
	if doc["report_stats"] != false || doc["macaroon_secret_key"] != "s3cret" || doc["listeners"] == nil {
		t.Errorf("config %v", doc)
	}
	// What update_synapse_database reads: the stand-in parses it too.
	cfg2, err := config.Load(path)
	if err != nil || cfg2.ServerName != "example.org" {
		t.Fatalf("reload: %v", err)
	}
}

func TestExceptionOf(t *testing.T) {
	lines := strings.Split(`2024-01-01 10:00:00,000 - synapse.storage.background_updates - 214 - ERROR - Error doing update: could not create unique index
Traceback (most recent call last):
  File "x.py", line 1, in run
    conn.statements(stmts)
psycopg2.errors.UniqueViolation: could not create unique index "state_group_edges_unique_idx"
DETAIL:  Key (state_group, prev_state_group)=(2, 1) is duplicated.

2024-01-01 10:00:00,100 - synapse.storage.background_updates - 235 - INFO - Starting update batch`, "\n")
	got := exceptionOf(lines)
	want := `psycopg2.errors.UniqueViolation: could not create unique index "state_group_edges_unique_idx" DETAIL:  Key (state_group, prev_state_group)=(2, 1) is duplicated.`
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	chained := strings.Split(`Traceback (most recent call last):
  File "a", line 1
sqlite3.IntegrityError: UNIQUE constraint failed: t.a

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "b", line 2
RuntimeError: 5 back-to-back background update failures; aborting.`, "\n")
	if got := exceptionOf(chained); got != "RuntimeError: 5 back-to-back background update failures; aborting." {
		t.Errorf("chained: %q", got)
	}
}

func TestFixFor(t *testing.T) {
	for _, c := range []struct {
		f    Failure
		want string
	}{
		{Failure{Phase: "background", Update: "state_group_edges_unique_idx", Cause: `psycopg2.errors.UniqueViolation: could not create unique index "state_group_edges_unique_idx"`}, "update_database repair state-group-edges --database-config <config>"},
		{Failure{Phase: "background", Update: "receipts_linearized_unique_index", Cause: "sqlite3.IntegrityError: UNIQUE constraint failed: receipts_linearized.room_id"}, "duplicated rows in receipts_linearized"},
		{Failure{Phase: "schema", Cause: "ValueError: Cannot use this database as it is too new for the server to understand"}, "upgraded by a newer release"},
		{Failure{Phase: "schema", Cause: "Expected database schema version 84 but got 83: run the main synapse process to upgrade the database schema before starting worker processes."}, "main process's config"},
		{Failure{Phase: "schema", Delta: "84/01_x.sql", Cause: "sqlite3.OperationalError: near \"x\": syntax error"}, "nothing of delta 84/01_x.sql was kept"},
	} {
		if got := FixFor(&c.f); !strings.Contains(got, c.want) {
			t.Errorf("%+v: fix %q, want %q in it", c.f, got, c.want)
		}
	}
}
