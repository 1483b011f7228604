package schema_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
	"hsops/schema/engine"
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
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nversion=%d/%v compat=%d/%v applied=%v updates=%v", strings.Join(c.Lines, "\n"),
		st.Version, st.HasVersion, st.Compat, st.HasCompat, st.Applied, st.Updates)
}

func mustApply(t *testing.T, s *schema.Set, d *db.DB, opts schema.Options) *schema.Result {
	t.Helper()
	res, err := s.Apply(context.Background(), d, opts)
	if err != nil {
		t.Fatalf("apply (target %d): %v", opts.Target, err)
	}
	return res
}

func TestPlan_RefusesCompatTooNew(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := engine.Schema()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{Target: 80})
		if _, err := d.Exec("UPDATE schema_compat_version SET compat_version = 84"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, schema.Options{})
		if !errors.Is(err, schema.ErrCompatTooNew) {
			t.Fatalf("got %v, want schema.ErrCompatTooNew", err)
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
		s := engine.Schema()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{Target: 68})
		if _, err := d.Exec("UPDATE schema_version SET version = 60"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(context.Background(), d, schema.Options{}); !errors.Is(err, schema.ErrTooOld) {
			t.Fatalf("got %v, want schema.ErrTooOld", err)
		}
	})
}

func TestPlan_RefusesSynapseAndForeignDatabases(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := engine.Schema()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{})
		// Without the engine's mark, the database reads as Synapse's.
		if _, err := d.Exec("DROP TABLE hsops_engine"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, schema.Options{})
		if !errors.Is(err, schema.ErrNotEngine) || !strings.Contains(err.Error(), "Synapse") {
			t.Fatalf("got %v, want ErrNotEngine naming Synapse", err)
		}
		if snapshot(t, d) != before {
			t.Error("the Synapse database was changed")
		}

		other := dbtest.New(t, e).Open(t)
		if _, err := other.Exec("CREATE TABLE accounts (id INTEGER)"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(context.Background(), other, schema.Options{}); !errors.Is(err, schema.ErrNotHomeserver) {
			t.Fatalf("got %v, want schema.ErrNotHomeserver", err)
		}
	})
}

func TestPlan_BadTargets(t *testing.T) {
	s := engine.Schema()
	for _, target := range []int{67, 84} {
		if _, err := s.Plan(&schema.State{Kind: schema.KindEmpty}, db.SQLite, schema.Options{Target: target}); !errors.Is(err, schema.ErrBadTarget) {
			t.Errorf("target %d: got %v, want schema.ErrBadTarget", target, err)
		}
	}
	st := &schema.State{Kind: schema.KindEngine, HasVersion: true, Version: 80, Upgraded: true, HasCompat: true, Compat: 76, Mark: &schema.Mark{}}
	if _, err := s.Plan(st, db.SQLite, schema.Options{Target: 75}); !errors.Is(err, schema.ErrBadTarget) {
		t.Errorf("downgrade target: got %v, want schema.ErrBadTarget", err)
	}
}

// A database left at a newer version by a newer release whose compat
// version allows this code to use it (a rollback) is accepted untouched.
func TestPlan_CompatibleNewerDatabaseIsLeftAlone(t *testing.T) {
	s := engine.Schema()
	old := *s
	old.Version = 80
	st := &schema.State{Kind: schema.KindEngine, HasVersion: true, Version: 83, Upgraded: true, HasCompat: true, Compat: 80, Mark: &schema.Mark{}}
	p, err := old.Plan(st, db.SQLite, schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || !strings.Contains(p.Note, "nothing to do") {
		t.Fatalf("got %d steps, note %q; want an empty plan", len(p.Steps), p.Note)
	}
}

func TestPlan_Worker(t *testing.T) {
	s := engine.Schema()
	if _, err := s.Plan(&schema.State{Kind: schema.KindEmpty}, db.SQLite, schema.Options{Worker: true}); !errors.Is(err, schema.ErrWorker) || !strings.Contains(err.Error(), "Uninitialised") && !strings.Contains(err.Error(), "uninitialised") {
		t.Errorf("empty database: got %v, want the uninitialised-database refusal", err)
	}
	st := &schema.State{Kind: schema.KindEngine, HasVersion: true, Version: 80, Upgraded: true, HasCompat: true, Compat: 76, Mark: &schema.Mark{}}
	_, err := s.Plan(st, db.SQLite, schema.Options{Worker: true})
	if !errors.Is(err, schema.ErrWorker) || !strings.Contains(err.Error(), "expected database schema version 83 but got 80") {
		t.Errorf("old database: got %v, want the outdated-schema refusal", err)
	}
}

// failingSet is a two-version schema whose second version fails half-way:
// its first delta creates a table, its second is broken.
func failingSet() *schema.Set {
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
	return &schema.Set{Name: "test", FS: fsys, Version: 3, Oldest: 1, Compat: map[int]int{1: 1, 2: 2, 3: 3}, Updates: schema.NewRegistry()}
}

// mustRead reads a file of the engine's schema.
func mustRead(path string) []byte {
	data, err := os.ReadFile(filepath.Join("engine", path))
	if err != nil {
		panic(err)
	}
	return data
}

func TestApply_FailedDeltaLeavesTheDatabaseExactlyAsBefore(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := failingSet()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{Target: 2})
		if _, err := d.Exec("INSERT INTO things (id, name, size) VALUES (1, 'a', 7)"); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, d)
		_, err := s.Apply(context.Background(), d, schema.Options{})
		var de *schema.DeltaError
		if !errors.As(err, &de) || de.Version != 3 || de.File != "02broken.sql" {
			t.Fatalf("got %v, want a schema.DeltaError for 3/02broken.sql", err)
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
		s := engine.Schema()
		tg := dbtest.New(t, e)
		first := tg.Open(t)
		second := tg.Open(t)
		mustApply(t, s, first, schema.Options{Target: 75})
		lock, err := schema.AcquireLock(ctx, first, "update_database (test holder)")
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, second)
		_, err = s.Apply(ctx, second, schema.Options{Holder: "second"})
		var le *schema.LockedError
		if !errors.As(err, &le) || !errors.Is(err, schema.ErrLocked) {
			t.Fatalf("got %v, want a schema.LockedError", err)
		}
		// The holder is named as it named itself, with its own pid (not a
		// PostgreSQL backend's), on both engines.
		wantHolder := fmt.Sprintf("update_database (test holder) (pid %d on ", os.Getpid())
		if !strings.Contains(le.Holder, wantHolder) || !strings.Contains(le.Holder, "since ") {
			t.Errorf("holder %q should name %q and since when", le.Holder, wantHolder)
		}
		// Looking, without taking the lock, finds the same holder.
		if err := schema.CheckLock(ctx, second); !errors.As(err, &le) || !strings.Contains(le.Holder, wantHolder) {
			t.Errorf("CheckLock = %v, want the holder %q", err, wantHolder)
		}
		if snapshot(t, second) != before {
			t.Error("the locked-out run changed the database")
		}
		if err := lock.Release(); err != nil {
			t.Fatal(err)
		}
		if err := schema.CheckLock(ctx, second); err != nil {
			t.Errorf("CheckLock after release = %v", err)
		}
		if res := mustApply(t, s, second, schema.Options{}); res.Version != 83 {
			t.Errorf("after release: version %d, want 83", res.Version)
		}
	})
}
