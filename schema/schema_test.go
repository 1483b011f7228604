package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/releases"
)

// snapshot is everything a test compares to prove "unchanged": the catalog
// and the bookkeeping rows.
func snapshot(t *testing.T, d *db.DB) string {
	t.Helper()
	ctx := context.Background()
	c, err := catalog.Dump(ctx, d, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(ctx, d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nversion=%d/%v compat=%d/%v applied=%v updates=%v", strings.Join(c.Lines, "\n"),
		st.Version, st.HasVersion, st.Compat, st.HasCompat, st.Applied, st.Updates)
}

func mustApply(t *testing.T, s *Set, d *db.DB, opts Options) *Result {
	t.Helper()
	res, err := s.Apply(context.Background(), d, opts)
	if err != nil {
		t.Fatalf("apply (target %d): %v", opts.Target, err)
	}
	return res
}

func runUpdates(t *testing.T, s *Set, d *db.DB) {
	t.Helper()
	r := &Runner{DB: d, Registry: s.Updates, Env: Env{Engine: d.Engine, ServerName: "example.org"}}
	if err := r.RunAll(context.Background()); err != nil {
		t.Fatalf("run background updates: %v", err)
	}
}

func TestCreate_Fresh83(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := dbtest.New(t, e).Open(t)
		s := Engine()
		res := mustApply(t, s, d, Options{})
		if !res.Plan.Create || res.Plan.Snapshot != 83 || res.Version != 83 {
			t.Fatalf("got create=%v snapshot=%d version=%d, want a database created from snapshot 83", res.Plan.Create, res.Plan.Snapshot, res.Version)
		}
		st, err := ReadState(ctx, d, d.DB)
		if err != nil {
			t.Fatal(err)
		}
		if st.Kind != KindEngine || st.Version != 83 || st.Upgraded || st.Compat != 83 || st.Mark == nil || st.Mark.CreatedVersion != 83 {
			t.Fatalf("got %+v, want engine database at 83 (not upgraded), compat 83, marked", st)
		}
		if len(st.Updates) != 0 {
			t.Errorf("got pending updates %v on a fresh database, want none", st.Updates)
		}
		// A second run has nothing to do and writes nothing.
		before := snapshot(t, d)
		res = mustApply(t, s, d, Options{})
		if !res.Plan.Empty() {
			t.Errorf("second run planned %d steps, want none", len(res.Plan.Steps))
		}
		if after := snapshot(t, d); after != before {
			t.Error("second run changed the database")
		}
	})
}

// TestUpgrade_EveryVersionReachesTheSameSchema is the schema identity test:
// a database created at any version from 68 to 82 and upgraded to 83 (with
// its background updates run) has exactly the schema of a fresh database
// created from the 83 snapshot.
func TestUpgrade_EveryVersionReachesTheSameSchema(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Engine()
		fresh := dbtest.New(t, e).Open(t)
		mustApply(t, s, fresh, Options{})
		want := dbtest.Dump(t, fresh)
		if len(want.Lines) < 300 {
			t.Fatalf("fresh catalog has only %d lines", len(want.Lines))
		}
		for v := s.Oldest; v < s.Version; v++ {
			t.Run(fmt.Sprint(v), func(t *testing.T) {
				d := dbtest.New(t, e).Open(t)
				res := mustApply(t, s, d, Options{Target: v})
				if res.Version != v {
					t.Fatalf("created at %d, want %d", res.Version, v)
				}
				mustApply(t, s, d, Options{})
				runUpdates(t, s, d)
				if diff := catalog.Diff(dbtest.Dump(t, d), want); len(diff) > 0 {
					t.Fatalf("schema after %d -> 83 differs from a fresh 83:\n%s", v, strings.Join(diff, "\n"))
				}
				st, err := ReadState(context.Background(), d, d.DB)
				if err != nil {
					t.Fatal(err)
				}
				if st.Version != 83 || st.Compat != 83 || !st.Upgraded {
					t.Errorf("got version %d compat %d upgraded %v, want 83/83/true", st.Version, st.Compat, st.Upgraded)
				}
			})
		}
	})
}

func TestCatalog_SeesADifference(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Engine()
		a := dbtest.New(t, e).Open(t)
		b := dbtest.New(t, e).Open(t)
		mustApply(t, s, a, Options{})
		mustApply(t, s, b, Options{})
		if _, err := b.Exec("CREATE INDEX extra_idx ON users (password_hash)"); err != nil {
			t.Fatal(err)
		}
		if diff := catalog.Diff(dbtest.Dump(t, a), dbtest.Dump(t, b)); len(diff) != 1 || !strings.Contains(diff[0], "extra_idx") {
			t.Fatalf("got diff %v, want exactly the extra index", diff)
		}
	})
}

func TestPlan_RefusesCompatTooNew(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Engine()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, Options{Target: 80})
		if _, err := d.Exec("UPDATE schema_compat_version SET compat_version = 84"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, Options{})
		if !errors.Is(err, ErrCompatTooNew) {
			t.Fatalf("got %v, want ErrCompatTooNew", err)
		}
		if !strings.Contains(err.Error(), "84") || !strings.Contains(err.Error(), "83") {
			t.Errorf("message %q should name both versions", err)
		}
		if after := snapshot(t, d); after != before {
			t.Error("the refused database was changed")
		}
	})
}

func TestPlan_RefusesTooOld(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Engine()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, Options{Target: 68})
		if _, err := d.Exec("UPDATE schema_version SET version = 60"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(context.Background(), d, Options{}); !errors.Is(err, ErrTooOld) {
			t.Fatalf("got %v, want ErrTooOld", err)
		}
	})
}

func TestPlan_RefusesSynapseAndForeignDatabases(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Engine()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, Options{})
		// Without the engine's mark, the database reads as Synapse's.
		if _, err := d.Exec("DROP TABLE hsops_engine"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, Options{})
		if !errors.Is(err, ErrNotEngine) || !strings.Contains(err.Error(), "Synapse") {
			t.Fatalf("got %v, want ErrNotEngine naming Synapse", err)
		}
		if snapshot(t, d) != before {
			t.Error("the Synapse database was changed")
		}

		other := dbtest.New(t, e).Open(t)
		if _, err := other.Exec("CREATE TABLE accounts (id INTEGER)"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(context.Background(), other, Options{}); !errors.Is(err, ErrNotHomeserver) {
			t.Fatalf("got %v, want ErrNotHomeserver", err)
		}
	})
}

func TestPlan_BadTargets(t *testing.T) {
	s := Engine()
	for _, target := range []int{67, 84} {
		if _, err := s.Plan(&State{Kind: KindEmpty}, db.SQLite, Options{Target: target}); !errors.Is(err, ErrBadTarget) {
			t.Errorf("target %d: got %v, want ErrBadTarget", target, err)
		}
	}
	st := &State{Kind: KindEngine, HasVersion: true, Version: 80, Upgraded: true, HasCompat: true, Compat: 76, Mark: &Mark{}, applied: map[string]bool{}}
	if _, err := s.Plan(st, db.SQLite, Options{Target: 75}); !errors.Is(err, ErrBadTarget) {
		t.Errorf("downgrade target: got %v, want ErrBadTarget", err)
	}
}

// A database left at a newer version by a newer release whose compat
// version allows this code to use it (a rollback) is accepted untouched.
func TestPlan_CompatibleNewerDatabaseIsLeftAlone(t *testing.T) {
	s := Engine()
	old := *s
	old.Version = 80
	st := &State{Kind: KindEngine, HasVersion: true, Version: 83, Upgraded: true, HasCompat: true, Compat: 80, Mark: &Mark{}, applied: map[string]bool{}}
	p, err := old.Plan(st, db.SQLite, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || !strings.Contains(p.Note, "nothing to do") {
		t.Fatalf("got %d steps, note %q; want an empty plan", len(p.Steps), p.Note)
	}
}

func TestPlan_Worker(t *testing.T) {
	s := Engine()
	if _, err := s.Plan(&State{Kind: KindEmpty}, db.SQLite, Options{Worker: true}); !errors.Is(err, ErrWorker) || !strings.Contains(err.Error(), "Uninitialised") && !strings.Contains(err.Error(), "uninitialised") {
		t.Errorf("empty database: got %v, want the uninitialised-database refusal", err)
	}
	st := &State{Kind: KindEngine, HasVersion: true, Version: 80, Upgraded: true, HasCompat: true, Compat: 76, Mark: &Mark{}, applied: map[string]bool{}}
	_, err := s.Plan(st, db.SQLite, Options{Worker: true})
	if !errors.Is(err, ErrWorker) || !strings.Contains(err.Error(), "expected database schema version 83 but got 80") {
		t.Errorf("old database: got %v, want the outdated-schema refusal", err)
	}
}

// failingSet is a two-version schema whose second version fails half-way:
// its first delta creates a table, its second is broken.
func failingSet() *Set {
	fsys := fstest.MapFS{
		"common/schema_version.sql":        &fstest.MapFile{Data: mustRead("common/schema_version.sql")},
		"common/full_schemas/1/full.sql":   &fstest.MapFile{Data: mustRead("common/full_schemas/68/full.sql")},
		"main/full_schemas/1/full.sql":     &fstest.MapFile{Data: []byte("CREATE TABLE things (id BIGINT, name TEXT);")},
		"state/full_schemas/1/full.sql":    &fstest.MapFile{Data: []byte("CREATE TABLE state_things (id BIGINT);")},
		"main/delta/2/01add_column.sql":    &fstest.MapFile{Data: []byte("ALTER TABLE things ADD COLUMN size BIGINT;")},
		"main/delta/3/01create_table.sql":  &fstest.MapFile{Data: []byte("CREATE TABLE other_things (id BIGINT); INSERT INTO other_things VALUES (1);")},
		"main/delta/3/02broken.sql":        &fstest.MapFile{Data: []byte("UPDATE things SET size = 1; CREATE TABLE broken (;")},
		"main/delta/3/03never_reached.sql": &fstest.MapFile{Data: []byte("CREATE TABLE never (id BIGINT);")},
		"state/delta/3/00state_change.sql": &fstest.MapFile{Data: []byte("ALTER TABLE state_things ADD COLUMN x BIGINT;")},
	}
	return &Set{Name: "test", FS: fsys, Version: 3, Oldest: 1, Compat: map[int]int{1: 1, 2: 2, 3: 3}, Updates: NewRegistry()}
}

func mustRead(path string) []byte {
	data, err := engineFiles.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return data
}

func TestApply_FailedDeltaLeavesTheDatabaseExactlyAsBefore(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := failingSet()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, Options{Target: 2})
		if _, err := d.Exec("INSERT INTO things (id, name, size) VALUES (1, 'a', 7)"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, Options{})
		var de *DeltaError
		if !errors.As(err, &de) || de.Version != 3 || de.File != "02broken.sql" {
			t.Fatalf("got %v, want a DeltaError for 3/02broken.sql", err)
		}
		if after := snapshot(t, d); after != before {
			t.Fatalf("database changed by a failed upgrade:\nbefore: %s\nafter: %s", before, after)
		}
		var size int
		if err := d.QueryRow("SELECT size FROM things WHERE id = 1").Scan(&size); err != nil || size != 7 {
			t.Fatalf("row changed: size=%d err=%v", size, err)
		}
	})
}

func TestApply_LockContention(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		s := Engine()
		tg := dbtest.New(t, e)
		first := tg.Open(t)
		second := tg.Open(t)
		mustApply(t, s, first, Options{Target: 75})
		lock, err := AcquireLock(ctx, first, "update_database (test holder)")
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, second)
		_, err = s.Apply(ctx, second, Options{Holder: "second"})
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
			t.Fatalf("got %v, want a LockedError", err)
		}
		wantHolder := "update_database (test holder)"
		if e == db.Postgres {
			wantHolder = "hsops-test"
		}
		if !strings.Contains(le.Holder, wantHolder) || !strings.Contains(le.Holder, "pid") {
			t.Errorf("holder %q should name %q and a pid", le.Holder, wantHolder)
		}
		if snapshot(t, second) != before {
			t.Error("the locked-out run changed the database")
		}
		if err := lock.Release(); err != nil {
			t.Fatal(err)
		}
		if res := mustApply(t, s, second, Options{}); res.Version != 83 {
			t.Errorf("after release: version %d, want 83", res.Version)
		}
	})
}

// The compat version recorded at each schema version is that of the last
// Synapse release with that schema version (75 never shipped).
func TestCompat_MatchesTheReleaseFacts(t *testing.T) {
	last := map[int]int{}
	for _, f := range releases.SchemaFacts() {
		last[f.Schema] = f.Compat
	}
	s := Engine()
	for v := s.Oldest; v <= s.Version; v++ {
		want, shipped := last[v]
		if !shipped {
			continue
		}
		if got := s.CompatFor(v); got != want {
			t.Errorf("schema %d records compat %d, the last release with it had %d", v, got, want)
		}
	}
}
