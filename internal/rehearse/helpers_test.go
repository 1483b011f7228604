package rehearse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// fakePython is the stand-in Synapse's interpreter.
func fakePython() string { return filepath.Join(repoDir(), "testdata", "fakesynapse", "python") }

// configFor renders a homeserver config around a database section.
func configFor(t *testing.T, serverName string, dbc config.Database) *config.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nreport_stats: false\ndatabase:\n  name: %s\n  args:\n", serverName, dbc.Name)
	keys := make([]string, 0, len(dbc.Args))
	for k := range dbc.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %q\n", k, dbc.Args[k])
	}
	cfg, err := config.Parse([]config.File{{Name: "homeserver.yaml", Data: []byte(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// engineDB makes an engine database at a schema version with a little
// data; synapse drops the engine's mark so that it reads as Synapse's.
func engineDB(t *testing.T, e db.Engine, version int, duplicates, synapse bool) (config.Database, *db.DB) {
	t.Helper()
	ctx := context.Background()
	tg := dbtest.New(t, e)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: version, ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	p := gen.Params{ServerName: "example.org", Users: 5, Rooms: 4, MembersPerRoom: 4, Messages: 60, Backfilled: 1, Seed: 1, TxSize: 1000}
	if _, err := gen.Generate(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	var stmts []string
	if duplicates {
		stmts = append(stmts, "INSERT INTO state_group_edges SELECT * FROM state_group_edges WHERE state_group IN (SELECT state_group FROM state_group_edges ORDER BY state_group LIMIT 2)")
	}
	if synapse {
		stmts = append(stmts, "DROP TABLE hsops_engine")
	}
	for _, s := range stmts {
		if _, err := d.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return tg.Config, d
}

// scratchLeft lists the scratch copies left beside a SQLite database or on
// the PostgreSQL server of a database.
func scratchLeft(t *testing.T, dbc config.Database) []string {
	t.Helper()
	if dbc.IsSQLite() {
		entries, err := os.ReadDir(filepath.Dir(dbc.SQLitePath()))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "hsops-rehearse") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	ctx := context.Background()
	conn, err := maintenance(ctx, dbc, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", "hsops\\_rehearse%"+pgBase(dbc.DBName())+"%")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// dropScratch drops a scratch database at the end of a test.
func dropScratch(t *testing.T, dbc config.Database, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := maintenance(ctx, dbc, "test")
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+qi(name)+" WITH (FORCE)")
	})
}
