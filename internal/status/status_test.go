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
	if s.Kind != "empty" || s.Problem != "" || s.PendingTarget != engine.Schema().Version || len(s.PendingDeltas) != 0 {
		t.Errorf("a file to create: %+v", s)
	}
	s, err = One(ctx, sqliteAt(filepath.Join(t.TempDir(), "missing", "new.db")))
	if err != nil {
		t.Fatal(err)
	}
	if s.Problem == "" {
		t.Errorf("a file in a missing directory: no problem said: %+v", s)
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
