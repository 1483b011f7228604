package schema_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

// A PostgreSQL database whose locale is not C is refused as it stands, kept
// when in use with allow_unsafe_locale, and never made a new database: the
// preflight runs inside Apply, so every path that applies the schema gets it.
func TestPreflight_Locale(t *testing.T) {
	ctx := context.Background()
	tgt := pgtest.NewDatabaseWithLocale(t, "C.UTF-8")
	d, err := db.Open(ctx, tgt.Config, db.Options{AppName: "hsops-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	empty := &schema.State{Kind: schema.KindEmpty}
	if err := schema.Preflight(ctx, d, empty, false); !errors.Is(err, db.ErrBadLocale) {
		t.Errorf("empty, locale not allowed: got %v, want ErrBadLocale", err)
	}
	if err := schema.Preflight(ctx, d, empty, true); !errors.Is(err, db.ErrBadLocale) || !strings.Contains(err.Error(), "new databases") {
		t.Errorf("empty, unsafe locale allowed: got %v, want the new-database refusal", err)
	}
	inUse := &schema.State{Kind: schema.KindEngine, HasVersion: true, Version: 83}
	if err := schema.Preflight(ctx, d, inUse, true); err != nil {
		t.Errorf("database in use, unsafe locale allowed: got %v, want it accepted", err)
	}
	if err := schema.Preflight(ctx, d, inUse, false); !errors.Is(err, db.ErrBadLocale) {
		t.Errorf("database in use, locale not allowed: got %v, want ErrBadLocale", err)
	}

	_, err = engine.Schema().Apply(ctx, d, schema.Options{AllowUnsafeLocale: true})
	if !errors.Is(err, db.ErrBadLocale) {
		t.Fatalf("apply on a new database: got %v, want ErrBadLocale", err)
	}
	if tables, err := d.Tables(ctx, d); err != nil || len(tables) != 0 {
		t.Errorf("the refused database has tables %v (%v), want none", tables, err)
	}

	c := pgtest.NewDatabase(t)
	good, err := db.Open(ctx, c.Config, db.Options{AppName: "hsops-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := schema.Preflight(ctx, good, empty, false); err != nil {
		t.Errorf("a C database: got %v, want it accepted", err)
	}
	sqlite, err := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": filepath.Join(t.TempDir(), "h.db")}}, db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite.Close()
	if err := schema.Preflight(ctx, sqlite, empty, false); err != nil {
		t.Errorf("SQLite: got %v, want it accepted", err)
	}
}

// TestPreflight_IsTheOnlyServerCheck holds the tools to one preflight: no
// Go file outside package db and this package's preflight.go calls the
// server checks directly.
func TestPreflight_IsTheOnlyServerCheck(t *testing.T) {
	callRE := regexp.MustCompile(`\bdb\.(CheckServer|CheckNewPostgres)\(`)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	allowed := map[string]bool{filepath.Join("schema", "preflight.go"): true}
	var offenders []string
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if e.IsDir() {
			if strings.HasPrefix(e.Name(), ".") && path != root || rel == filepath.Join("internal", "db") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || allowed[rel] {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range callRE.FindAllString(string(data), -1) {
			offenders = append(offenders, rel+": "+m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(offenders) > 0 {
		t.Errorf("server checks called outside schema.Preflight:\n  %s", strings.Join(offenders, "\n  "))
	}
}
