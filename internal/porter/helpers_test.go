package porter

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// engineSource creates an engine SQLite database at schema 83 filled by the
// generator, and returns its path.
func engineSource(t testing.TB, p gen.Params) string { return engineSourceAt(t, p, 0) }

// engineSourceAt is engineSource at schema version v (0: the newest).
func engineSourceAt(t testing.TB, p gen.Params, v int) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "homeserver.db")
	d, err := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": path}}, db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: v, ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Generate(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	return path
}

func openSQLite(t testing.TB, path string) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": path}}, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func openPG(t testing.TB, cfg config.Database) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), cfg, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type sqlTx = sql.Tx
