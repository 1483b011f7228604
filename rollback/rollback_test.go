package rollback

import (
	"context"
	"errors"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
)

// TestEveryDeltaHasAReverse checks the rollback set against the schema:
// every delta of every version has a reverse on both engines, with a
// summary and well-formed declarations, and every reverse file belongs to a
// delta.
func TestEveryDeltaHasAReverse(t *testing.T) {
	s := Engine()
	used := map[string]bool{}
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		for v := s.Schema.Oldest + 1; v <= s.Schema.Version; v++ {
			deltas, err := s.Schema.Deltas(v, schema.Stores, e)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range deltas {
				r, err := s.Lookup(d, e)
				if err != nil {
					t.Errorf("%s: %v", e, err)
					continue
				}
				used[r.Path] = true
				// The reverse declares what it takes off the queue: at
				// least what its delta queued, and exactly what its SQL
				// deletes.
				for _, name := range queueNames(d.SQL, "INSERT INTO background_updates") {
					if !slices.Contains(r.Decl.Dequeues, name) {
						t.Errorf("%s (%s): the delta queues %s, the reverse does not declare dequeuing it", r.Path, e, name)
					}
				}
				if r.Go == nil && !slices.Equal(queueNames(r.SQL, "DELETE FROM background_updates"), r.Decl.Dequeues) {
					t.Errorf("%s: deletes %v from the queue, declares %v", r.Path, queueNames(r.SQL, "DELETE FROM background_updates"), r.Decl.Dequeues)
				}
			}
		}
	}
	err := fs.WalkDir(s.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !used[p] {
			t.Errorf("reverse %s belongs to no delta", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range s.Go {
		if !used[p] {
			t.Errorf("Go reverse %s belongs to no delta", p)
		}
	}
}

var (
	// queuedRE finds the update name of each (ordering, update_name, ...)
	// row the engine's deltas insert; deletedRE the names a DELETE lists.
	queuedRE  = regexp.MustCompile(`\(\s*\d+\s*,\s*'([a-z0-9_]+)'`)
	deletedRE = regexp.MustCompile(`'([a-z0-9_]+)'`)
)

// queueNames are the update names in the statements of sql that start with
// prefix.
func queueNames(sql, prefix string) []string {
	re := deletedRE
	if strings.HasPrefix(prefix, "INSERT") {
		re = queuedRE
	}
	var out []string
	for _, stmt := range strings.Split(sql, ";") {
		if i := strings.Index(stmt, prefix); i >= 0 {
			for _, m := range re.FindAllStringSubmatch(stmt[i:], -1) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

func TestParseHeader(t *testing.T) {
	d, summary, err := parseHeader(`-- Drop things.
-- loses: column users.locked WHERE locked (locked accounts)
-- drops: table threads (derived)
-- keeps: column events.state_key (copied)
-- restores-empty: table presence (unused)
-- irreversible: gone for good
-- affects: table events (the events)
-- an ordinary comment
DROP TABLE x;`)
	if err != nil {
		t.Fatal(err)
	}
	if summary != "Drop things." {
		t.Errorf("summary %q", summary)
	}
	want := Data{Kind: "column", Table: "users", Column: "locked", Where: "locked", Why: "locked accounts"}
	if len(d.Loses) != 1 || d.Loses[0] != want {
		t.Errorf("loses %+v, want %+v", d.Loses, want)
	}
	if len(d.Drops) != 1 || d.Drops[0].Table != "threads" || len(d.Keeps) != 1 || len(d.RestoresEmpty) != 1 || d.Irreversible != "gone for good" ||
		d.Affects == nil || d.Affects.Table != "events" {
		t.Errorf("got %+v", d)
	}
	for _, bad := range []string{
		"-- x\n-- loses: column users (no column)",
		"-- x\n-- loses: rows users (no condition)",
		"-- x\n-- loses: table users.name (a column on a table)",
		"-- x\n-- irreversible:",
		"-- x\n-- drops: index foo",
		"-- x\n-- affects: table events (without irreversible)",
	} {
		if _, _, err := parseHeader(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRefusesDataLossUnlessAllowed(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := create(t, e, 83)
		seed(t, d, 83)
		if _, err := d.Exec(d.Rebind("UPDATE users SET locked = ? WHERE name = '@bob:example.org'"), true); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec("INSERT INTO scheduled_tasks (id, action, status, timestamp) VALUES ('t1', 'purge_room', 'scheduled', 1)"); err != nil {
			t.Fatal(err)
		}
		before := dbtest.Contents(t, d)
		_, err := Engine().Apply(ctx, d, Options{Target: 79})
		var loss *DataLossError
		if !errors.As(err, &loss) || !errors.Is(err, ErrDataLoss) {
			t.Fatalf("got %v, want a data loss refusal", err)
		}
		got := map[string]int64{}
		for _, c := range loss.Lost {
			got[c.String()] = c.Rows
		}
		if got["users.locked where locked"] != 1 || got["scheduled_tasks"] != 1 || len(got) != 2 {
			t.Errorf("refusal names %v, want users.locked (1) and scheduled_tasks (1)", got)
		}
		if !strings.Contains(err.Error(), "users.locked where locked (1 row)") {
			t.Errorf("error %q does not name the locked users", err)
		}
		if after := dbtest.Contents(t, d); after != before {
			t.Fatalf("a refused rollback changed the database")
		}
		res, err := Engine().Apply(ctx, d, Options{Target: 79, AllowDataLoss: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != 79 {
			t.Errorf("rolled back to %d", res.Version)
		}
	})
}

func TestRefusesIrreversibleUnlessAllowed(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := create(t, e, 72)
		seed(t, d, 72)
		p, err := Engine().Plan(ctx, d, d, mustState(t, d), Options{Target: 71})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Irreversible) != 1 || p.Irreversible[0].Delta != "72/03drop_event_reference_hashes.sql" {
			t.Fatalf("irreversible %+v", p.Irreversible)
		}
		if a := p.Irreversible[0].Affects; a == nil || a.Table != "events" || a.Rows == 0 {
			t.Fatalf("the irreversible reverse affects %+v, want the events counted", a)
		}
		if _, err := Engine().Apply(ctx, d, Options{Target: 71}); !errors.Is(err, ErrDataLoss) {
			t.Fatalf("got %v, want a refusal", err)
		}
		if _, err := Engine().Apply(ctx, d, Options{Target: 71, AllowDataLoss: true}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNothingToLose: on a database that holds none of the data a rollback
// would destroy (a new one), nothing is refused, and the plan says there is
// nothing to lose rather than listing zeros as losses.
func TestNothingToLose(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := create(t, e, 83)
		p, err := Engine().Plan(ctx, d, d, mustState(t, d), Options{Target: 69})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Refusal(); err != nil {
			t.Fatalf("an empty database: refused with %v", err)
		}
		var b strings.Builder
		formatPlan(&b, "db", p, "", "", false)
		out := b.String()
		for _, bad := range []string{"data lost", "0 values", "0 rows", "refused"} {
			if strings.Contains(out, bad) {
				t.Errorf("the plan says %q:\n%s", bad, out)
			}
		}
		for _, want := range []string{"nothing to lose: these are empty here: ", "cannot be undone, but nothing to lose here (events holds no rows)", "in one transaction; nothing to lose"} {
			if !strings.Contains(out, want) {
				t.Errorf("the plan does not say %q:\n%s", want, out)
			}
		}
		if _, err := Engine().Apply(ctx, d, Options{Target: 69}); err != nil {
			t.Fatalf("an empty database: %v", err)
		}
	})
}

func mustState(t *testing.T, d *db.DB) *schema.State {
	t.Helper()
	st, err := schema.ReadState(context.Background(), d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestFailedReverseLeavesTheDatabaseAsItWas breaks one reverse in the
// middle of a rollback: everything before it is undone too.
func TestFailedReverseLeavesTheDatabaseAsItWas(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := create(t, e, 83)
		seed(t, d, 83)
		before := dbtest.Contents(t, d)
		s := Engine()
		files := fstest.MapFS{}
		err := fs.WalkDir(s.FS, ".", func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			data, err := fs.ReadFile(s.FS, p)
			files[p] = &fstest.MapFile{Data: data}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		files["main/delta/74/05_events_txn_id_device_id.sql"] = &fstest.MapFile{Data: []byte("-- Fail.\nDROP TABLE no_such_table;")}
		s.FS = files
		_, err = s.Apply(ctx, d, Options{Target: 70, AllowDataLoss: true})
		var rerr *ReverseError
		if !errors.As(err, &rerr) || rerr.Version != 74 {
			t.Fatalf("got %v, want the reverse of 74/05 to fail", err)
		}
		if after := dbtest.Contents(t, d); after != before {
			t.Fatalf("a failed rollback changed the database:\n%s", dbtest.DiffLines(before, after))
		}
	})
}

// TestPlan_ReportsWhatItDoes checks the plan of a rollback with data in
// the tables it touches.
func TestPlan_ReportsWhatItDoes(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := create(t, e, 76)
		seed(t, d, 76)
		upgrade(t, d, 78)
		p, err := Engine().Plan(ctx, d, d, mustState(t, d), Options{Target: 76})
		if err != nil {
			t.Fatal(err)
		}
		if p.From != 78 || p.Target != 76 || p.CompatAfter != 74 || !p.UpgradedAfter || p.CreatedAfter != 68 {
			t.Errorf("got from %d target %d compat %d upgraded %v created %d", p.From, p.Target, p.CompatAfter, p.UpgradedAfter, p.CreatedAfter)
		}
		if len(p.Steps) != 2 || p.Steps[0].Version != 78 || p.Steps[1].Version != 77 {
			t.Fatalf("steps %+v", p.Steps)
		}
		first := p.Steps[0].Reverses[0].Delta.Name
		if e == db.SQLite && first != "04_add_full_user_id_index_user_filters.sql.sqlite" {
			t.Errorf("first reverse %s, want the newest delta's", first)
		}
		for _, key := range p.RemoveApplied {
			if v, _ := keyVersion(key); v <= 76 {
				t.Errorf("removes %s", key)
			}
		}
		if len(p.RemoveApplied) == 0 {
			t.Error("no applied_schema_deltas rows removed")
		}
		// The 77/14 index builds are pending; on PostgreSQL so is the
		// thread_id back-fill (SQLite's 77/06 finishes it).
		if !contains(p.Dequeued, "room_memberships_stream_ordering_idx") || contains(p.Dequeued, "event_push_backfill_thread_id") != (e == db.Postgres) {
			t.Errorf("dequeued %v", p.Dequeued)
		}
		// 78/01 and 78/02 finished the full_user_id back-fills: their
		// reverses queue them again, and 77/03 and 77/04's take them away.
		if len(p.Requeued) != 0 {
			t.Errorf("requeued %v, want none", p.Requeued)
		}
		p77, err := Engine().Plan(ctx, d, d, mustState(t, d), Options{Target: 77})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(p77.Requeued, ",") != "populate_full_user_id_profiles,populate_full_user_id_user_filters" {
			t.Errorf("requeued %v at 77, want the two full_user_id back-fills", p77.Requeued)
		}
		keeps := map[string]bool{}
		for _, k := range p.Keeps {
			keeps[k.String()] = true
		}
		if !keeps["profiles.full_user_id"] || !keeps["event_push_actions.thread_id"] {
			t.Errorf("keeps %v", keeps)
		}
		if err := p.Refusal(); err != nil {
			t.Errorf("refusal %v for a rollback that loses nothing", err)
		}
	})
}

// TestSQLiteRebuild_RefusesReferencedTables checks the guard of the SQLite
// table rebuild: dropping a table others reference would run their ON
// DELETE actions.
func TestSQLiteRebuild_RefusesReferencedTables(t *testing.T) {
	d := create(t, db.SQLite, 83)
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = rebuildWithout(context.Background(), tx, "events", []string{"state_key"})
	if err == nil || !strings.Contains(err.Error(), "references it") {
		t.Fatalf("got %v, want a refusal", err)
	}
	err = rebuildWithout(context.Background(), tx, "room_memberships", []string{"no_such_column"})
	if err == nil || !strings.Contains(err.Error(), "no column no_such_column") {
		t.Fatalf("got %v", err)
	}
	err = rebuildWithout(context.Background(), tx, "room_memberships", []string{"user_id"})
	if err == nil || !strings.Contains(err.Error(), "uses column user_id") {
		t.Fatalf("got %v, want a refusal to drop an indexed column", err)
	}
}
