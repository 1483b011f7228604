// Package dbtest runs one test body on both engines: a SQLite file in a
// temporary directory and a PostgreSQL database from pgtest.
package dbtest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
	"hsops/internal/rowsum"
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

// Dump is the database's catalog.
func Dump(tb testing.TB, d *db.DB) *catalog.Catalog {
	tb.Helper()
	c, err := catalog.Dump(context.Background(), d, catalog.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Contents is everything tests compare to prove a database unchanged: its
// catalog and a checksum of every table's rows (bookkeeping included),
// leaving out FTS shadow tables and the tables named in skip.
func Contents(tb testing.TB, d *db.DB, skip ...string) string {
	tb.Helper()
	ctx := context.Background()
	var b strings.Builder
	b.WriteString(strings.Join(Dump(tb, d).Lines, "\n"))
	tables, err := d.Tables(ctx, d)
	if err != nil {
		tb.Fatal(err)
	}
	left := map[string]bool{}
	for _, t := range skip {
		left[t] = true
	}
	for _, tbl := range tables {
		if strings.HasPrefix(tbl, "event_search_") || left[tbl] {
			continue
		}
		cols, err := rowsum.Columns(ctx, d, d, tbl)
		if err != nil {
			tb.Fatal(err)
		}
		sum, err := rowsum.Table(ctx, d, db.QuoteIdent(tbl), cols)
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&b, "\n%s: %s", tbl, sum)
	}
	return b.String()
}

// DiffLines lists the lines only in b ("+ ...") and only in a ("- ...").
func DiffLines(a, b string) string {
	only := func(x, y string, mark string) []string {
		in := map[string]bool{}
		for _, l := range strings.Split(y, "\n") {
			in[l] = true
		}
		var out []string
		for _, l := range strings.Split(x, "\n") {
			if !in[l] {
				out = append(out, mark+l)
			}
		}
		return out
	}
	return strings.Join(append(only(b, a, "+ "), only(a, b, "- ")...), "\n")
}
