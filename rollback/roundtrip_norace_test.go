//go:build !race

package rollback

// The round-trip property runs without the race detector: it is
// single-goroutine SQL, and under the detector the pure-Go SQLite driver
// runs about ten times slower (minutes for the 240 round trips). .ci/run
// runs it in a second, non-race pass: see README.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/clienttest"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/internal/rowsum"
	"hsops/schema"
	"hsops/schema/engine"
)

// roundTrips are the pairs a < b the property runs on: every pair; with
// -short (the developer's loop) on SQLite each version to the next, which
// runs every reverse once, and the whole span; on PostgreSQL the whole span
// alone, which runs every reverse too. CI runs them all on both.
func roundTrips(e db.Engine, oldest, newest int) [][2]int {
	var out [][2]int
	for a := oldest; a < newest; a++ {
		for b := a + 1; b <= newest; b++ {
			span := a == oldest && b == newest
			if !testing.Short() || span || (b == a+1 && e == db.SQLite) {
				out = append(out, [2]int{a, b})
			}
		}
	}
	return out
}

// targets are the versions a database at the newest one is rolled back
// to: all of them; with -short the oldest (every reverse), one in the
// middle and the newest but one.
func targets(oldest, newest int) []int {
	var out []int
	for a := oldest; a < newest; a++ {
		if !testing.Short() || a == oldest || a == (oldest+newest)/2 || a == newest-1 {
			out = append(out, a)
		}
	}
	return out
}

// TestRoundTrip_EveryPair is the rollback property: for every pair of
// versions a < b, a seeded database created at a and upgraded to b (with
// its background updates done) rolls back to a with exactly the schema of a
// fresh database at a, the bookkeeping of one, and every row of the tables
// that survive unchanged (except the columns a reverse declares it keeps
// filled); upgrading it to b again works and gives back the same rows.
func TestRoundTrip_EveryPair(t *testing.T) {
	set := engine.Schema()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		pairs := roundTrips(e, set.Oldest, set.Version)
		var need []int
		for _, ab := range pairs {
			need = append(need, ab[0], ab[1])
		}
		refs := references(t, e, need)
		for _, ab := range pairs {
			{
				a, b := ab[0], ab[1]
				t.Run(fmt.Sprintf("%d-%d", a, b), func(t *testing.T) {
					t.Parallel()
					want := refs[a]
					d := want.clone(t)
					upgrade(t, d, b)
					runUpdates(t, d)
					// The tables of a that b still has, with a's columns.
					surviving := map[string][]rowsum.Column{}
					for tbl, cols := range want.shape {
						if _, ok := refs[b].shape[tbl]; ok {
							surviving[tbl] = cols
						}
					}
					upgraded := rows(t, d, surviving, nil)

					res := mustRollback(t, d, a)
					runUpdates(t, d)
					if diff := catalog.Diff(dbtest.Dump(t, d), want.catalog); len(diff) > 0 {
						t.Fatalf("schema after %d -> %d -> %d differs from a fresh %d:\n%s", a, b, a, a, strings.Join(diff, "\n"))
					}
					checkState(t, d, want, false)
					kept := map[string]bool{}
					for _, k := range res.Plan.Keeps {
						kept[k.Table+"."+k.Column] = true
					}
					if diff := diffRows(rows(t, want.read(t), want.shape, kept), rows(t, d, want.shape, kept)); len(diff) > 0 {
						t.Fatalf("rows after %d -> %d -> %d differ from a fresh %d:\n%s", a, b, a, a, strings.Join(diff, "\n"))
					}

					upgrade(t, d, b)
					runUpdates(t, d)
					if diff := catalog.Diff(dbtest.Dump(t, d), refs[b].catalog); len(diff) > 0 {
						t.Fatalf("schema after upgrading to %d again differs from a fresh %d:\n%s", b, b, strings.Join(diff, "\n"))
					}
					if diff := diffRows(upgraded, rows(t, d, surviving, nil)); len(diff) > 0 {
						t.Fatalf("rows after upgrading to %d again differ from the first upgrade:\n%s", b, strings.Join(diff, "\n"))
					}
				})
			}
		}
	})
}

// TestRoundTrip_FromTheSnapshot rolls databases created from the schema 83
// snapshot (no applied_schema_deltas rows) back to every version.
func TestRoundTrip_FromTheSnapshot(t *testing.T) {
	set := engine.Schema()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		refs := references(t, e, append(targets(set.Oldest, set.Version), set.Version))
		for _, a := range targets(set.Oldest, set.Version) {
			t.Run(fmt.Sprint(a), func(t *testing.T) {
				t.Parallel()
				want := refs[a]
				d := create(t, e, set.Version)
				seed(t, d, set.Version)
				// The tables of a that 83 still has, with a's columns.
				surviving := map[string][]rowsum.Column{}
				for tbl, cols := range want.shape {
					if _, ok := refs[set.Version].shape[tbl]; ok {
						surviving[tbl] = cols
					}
				}
				// Their rows must come through unchanged, apart from the
				// derived values a reverse declares it keeps (the updates at a
				// fill them).
				st, err := schema.ReadState(context.Background(), d, d.DB)
				if err != nil {
					t.Fatal(err)
				}
				plan, err := Engine().Plan(context.Background(), d, d, st, Options{Target: a})
				if err != nil {
					t.Fatal(err)
				}
				kept := map[string]bool{}
				for _, k := range plan.Keeps {
					kept[k.Table+"."+k.Column] = true
				}
				before := rows(t, d, surviving, kept)
				mustRollback(t, d, a)
				runUpdates(t, d)
				if diff := catalog.Diff(dbtest.Dump(t, d), want.catalog); len(diff) > 0 {
					t.Fatalf("schema after 83 -> %d differs from a fresh %d:\n%s", a, a, strings.Join(diff, "\n"))
				}
				checkState(t, d, want, true)
				if diff := diffRows(before, rows(t, d, surviving, kept)); len(diff) > 0 {
					t.Fatalf("rows after 83 -> %d changed:\n%s", a, strings.Join(diff, "\n"))
				}
				upgrade(t, d, set.Version)
				runUpdates(t, d)
				if diff := catalog.Diff(dbtest.Dump(t, d), refs[set.Version].catalog); len(diff) > 0 {
					t.Fatalf("schema after upgrading again differs from a fresh 83:\n%s", strings.Join(diff, "\n"))
				}
			})
		}
	})
}

// TestRoundTrip_ClientData rolls a database that clients filled through the
// engine's endpoints (messages, a thread, profiles, filters, receipts in
// and out of threads, read markers, account data, tags) back to every
// version and up again: the rows of every table come through unchanged but
// for what the reverses declare (lost rows, dropped columns), both at the
// older version and after the upgrade back to 83.
func TestRoundTrip_ClientData(t *testing.T) {
	set := engine.Schema()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		refs := references(t, e, append(targets(set.Oldest, set.Version), set.Version))
		// The clients fill one database; each subtest changes a copy of it
		// (a SQLite file copied, a PostgreSQL database cloned from it as a
		// template, which no session may hold: it is not opened here).
		tg := dbtest.New(t, e)
		clienttest.Populate(t, tg.Config)
		var source *db.DB
		if e == db.SQLite {
			source = tg.Open(t)
		}
		for _, a := range targets(set.Oldest, set.Version) {
			t.Run(fmt.Sprint(a), func(t *testing.T) {
				t.Parallel()
				var d *db.DB
				if e == db.SQLite {
					path := filepath.Join(t.TempDir(), "homeserver.db")
					if _, err := source.Exec("VACUUM INTO ?", path); err != nil {
						t.Fatal(err)
					}
					var err error
					if d, err = db.OpenSQLite(context.Background(), path, db.Options{}); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { d.Close() })
				} else {
					clone := dbtest.Target{Engine: e, Config: pgtest.Clone(t, tg.Config.Args["dbname"]).Config}
					d = clone.Open(t)
				}
				st, err := schema.ReadState(context.Background(), d, d.DB)
				if err != nil {
					t.Fatal(err)
				}
				plan, err := Engine().Plan(context.Background(), d, d, st, Options{Target: a})
				if err != nil {
					t.Fatal(err)
				}
				// What the plan says goes: rows (by their WHERE), columns, tables.
				lostRows := map[string]string{}
				skip := map[string]bool{}
				for _, c := range append(append(append([]Count{}, plan.Loses...), plan.Drops...), plan.Keeps...) {
					switch c.Kind {
					case "rows":
						if c.Where != "" {
							lostRows[c.Table] = c.Where
						}
					case "column":
						skip[c.Table+"."+c.Column] = true
					case "table":
						skip[c.Table] = true
					}
				}
				if a < 72 && !hasLoss(plan, "receipts_linearized") {
					t.Errorf("the rollback to %d declares no loss of the receipt in a thread", a)
				}
				full := shape(t, d)
				// before: leave out the rows the rollback will lose.
				keptRows := func(d *db.DB, sh map[string][]rowsum.Column, before bool) map[string]string {
					out := map[string]string{}
					for tbl, cols := range sh {
						if skip[tbl] {
							continue
						}
						var keep []rowsum.Column
						for _, c := range cols {
							if !skip[tbl+"."+c.Name] {
								keep = append(keep, c)
							}
						}
						from := db.QuoteIdent(tbl)
						if w := lostRows[tbl]; w != "" && before {
							from = "(SELECT * FROM " + from + " WHERE NOT (" + w + ")) AS t"
						}
						sum, err := rowsum.Table(context.Background(), d, from, keep)
						if err != nil {
							t.Fatal(err)
						}
						out[tbl] = sum.String()
					}
					return out
				}
				// The tables of a that 83 still has, with a's columns.
				older := map[string][]rowsum.Column{}
				for tbl, cols := range refs[a].shape {
					if _, ok := full[tbl]; ok {
						older[tbl] = cols
					}
				}
				before, beforeFull := keptRows(d, older, true), keptRows(d, full, true)
				for _, tbl := range []string{"receipts_linearized", "receipts_graph", "room_account_data", "account_data", "room_tags", "room_tags_revisions", "user_filters", "profiles"} {
					if n := count(t, d, "SELECT count(*) FROM "+tbl); n == 0 {
						t.Fatalf("the clients wrote nothing in %s", tbl)
					}
				}

				mustRollback(t, d, a)
				runUpdates(t, d)
				if diff := catalog.Diff(dbtest.Dump(t, d), refs[a].catalog); len(diff) > 0 {
					t.Fatalf("schema after 83 -> %d differs from a fresh %d:\n%s", a, a, strings.Join(diff, "\n"))
				}
				if diff := diffRows(before, keptRows(d, older, false)); len(diff) > 0 {
					t.Fatalf("rows after 83 -> %d changed:\n%s", a, strings.Join(diff, "\n"))
				}
				upgrade(t, d, set.Version)
				runUpdates(t, d)
				if diff := diffRows(beforeFull, keptRows(d, full, false)); len(diff) > 0 {
					t.Fatalf("rows after 83 -> %d -> 83 changed:\n%s", a, strings.Join(diff, "\n"))
				}
			})
		}
	})
}

func hasLoss(p *Plan, table string) bool {
	for _, c := range p.Loses {
		if c.Table == table && c.Kind == "rows" && c.Rows > 0 {
			return true
		}
	}
	return false
}

func count(t *testing.T, d *db.DB, q string) int64 {
	t.Helper()
	var n int64
	if err := d.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
