package status

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/rollback"
	"hsops/schema"
	"hsops/schema/engine"
)

func sqliteAt(path string) config.Database {
	return config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path}, DataStores: []string{"main", "state"}}
}

func TestOne_MissingSQLiteFile(t *testing.T) {
	ctx := context.Background()
	s, err := One(ctx, sqliteAt(filepath.Join(t.TempDir(), "new.db")))
	if err != nil {
		t.Fatal(err)
	}
	// A missing file is not an empty database: status says it does not
	// exist (a mistyped path), with the class of a database that cannot be
	// opened.
	if s.Kind != "missing" || !errors.Is(s.Err(), ErrMissing) || fault.ClassOf(s.Err()) != fault.Database || !strings.Contains(s.Problem, "does not exist") {
		t.Errorf("a missing file: %+v", s)
	}
	s, err = One(ctx, sqliteAt(filepath.Join(t.TempDir(), "missing", "new.db")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Problem, "its directory does not exist either") {
		t.Errorf("a file in a missing directory: %+v", s)
	}
	if _, err := Updates(ctx, &config.Config{Databases: []config.Database{sqliteAt(filepath.Join(t.TempDir(), "new.db"))}}); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("Updates of a missing file: %v, want db.ErrNotFound", err)
	}
}

func TestOne_EngineDatabase(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	if _, err := engine.Schema().Apply(ctx, tg.Open(t), schema.Options{Target: 76}); err != nil {
		t.Fatal(err)
	}
	s, err := One(ctx, tg.Config)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != "engine" || s.Schema != 76 || s.Compat == nil || s.CreatedVersion == 0 || !s.Upgraded || len(s.Updates) == 0 {
		t.Errorf("versions: %+v", s)
	}
	if len(s.Matching) == 0 || s.OldestUsable == "" {
		t.Errorf("releases: %+v", s)
	}
	if s.PendingTarget != engine.Schema().Version || len(s.PendingDeltas) == 0 || !strings.HasPrefix(s.PendingDeltas[0], "77/") {
		t.Errorf("pending deltas: target %d, %v", s.PendingTarget, s.PendingDeltas)
	}
	var b strings.Builder
	s.Format(&b, "hs.yaml")
	if !strings.Contains(b.String(), "run update_database --database-config hs.yaml") {
		t.Errorf("Format does not name the command to run:\n%s", b.String())
	}
}

// TestOne_RolledBack: after a rollback, status says so (from which version,
// when) instead of "reached by upgrade", from the bookkeeping the rollback
// wrote; a mark written before rollbacks were recorded gets the columns.
func TestOne_RolledBack(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		tg := dbtest.New(t, e)
		d := tg.Open(t)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 78}); err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
			t.Fatal(err)
		}
		// An older mark, without the rollback columns.
		for _, col := range []string{"rolled_back_from", "rolled_back_to", "rolled_back_ts"} {
			if _, err := d.Exec("ALTER TABLE hsops_engine DROP COLUMN " + col); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := rollback.Engine().Apply(ctx, d, rollback.Options{Target: 79}); err != nil {
			t.Fatal(err)
		}
		s, err := One(ctx, tg.Config)
		if err != nil {
			t.Fatal(err)
		}
		if s.Schema != 79 || s.RolledBackFrom != 83 || s.RolledBackAt == "" || s.Err() != nil {
			t.Fatalf("after a rollback from 83 to 79: %+v", s)
		}
		var b strings.Builder
		s.Format(&b, "hs.yaml")
		if want := "schema version:      79 (rolled back from 83 on " + s.RolledBackAt + ")"; !strings.Contains(b.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, b.String())
		}
		// Upgraded again, it was reached by upgrade.
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 80}); err != nil {
			t.Fatal(err)
		}
		if s, _ = One(ctx, tg.Config); s.RolledBackFrom != 0 || !s.Upgraded {
			t.Errorf("upgraded after the rollback: %+v", s)
		}
	})
}

// TestOne_NewerThanKnown: a database a newer release wrote is a problem
// of the version class, said with the one sentinel every tool uses.
func TestOne_NewerThanKnown(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("UPDATE schema_version SET version = 85; UPDATE schema_compat_version SET compat_version = 84"); err != nil {
		t.Fatal(err)
	}
	s, err := One(ctx, tg.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(s.Err(), schema.ErrNewerThanKnown) || fault.ClassOf(s.Err()) != fault.Version {
		t.Errorf("a database at 85 (compat 84): problem %v", s.Err())
	}
}
