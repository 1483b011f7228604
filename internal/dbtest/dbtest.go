// Package dbtest runs one test body on both engines: a SQLite file in a
// temporary directory and a PostgreSQL database from pgtest.
package dbtest

import (
	"context"
	"path/filepath"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
)

// Target is a fresh empty database of one engine.
type Target struct {
	Engine db.Engine
	Config config.Database
}

// Open opens the target.
func (tg Target) Open(tb testing.TB) *db.DB {
	tb.Helper()
	d, err := db.Open(context.Background(), tg.Config, db.Options{Create: true, AppName: "hsops-test"})
	if err != nil {
		tb.Fatalf("open %s: %v", tg.Config, err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// New returns a fresh empty database of the engine.
func New(tb testing.TB, e db.Engine) Target {
	tb.Helper()
	if e == db.Postgres {
		return Target{Engine: e, Config: pgtest.NewDatabase(tb).Config}
	}
	path := filepath.Join(tb.TempDir(), "homeserver.db")
	return Target{Engine: e, Config: config.Database{
		Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path},
		DataStores: []string{"main", "state"}, SynchronousCommit: true,
	}}
}

// Engines runs body once per engine as a subtest.
func Engines(t *testing.T, body func(t *testing.T, e db.Engine)) {
	t.Helper()
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		e := e
		t.Run(string(e), func(t *testing.T) { body(t, e) })
	}
}
