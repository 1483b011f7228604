//go:build !race

package rollback

// The round-trip property runs without the race detector: it is
// single-goroutine SQL, and under the detector the pure-Go SQLite driver
// runs about ten times slower (minutes for the 240 round trips). .ci/run
// runs it in a second, non-race pass: see README.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/rowsum"
	"hsops/schema"
)

// TestRoundTrip_EveryPair is the rollback property: for every pair of
// versions a < b, a seeded database created at a and upgraded to b (with
// its background updates done) rolls back to a with exactly the schema of a
// fresh database at a, the bookkeeping of one, and every row of the tables
// that survive unchanged (except the columns a reverse declares it keeps
// filled); upgrading it to b again works and gives back the same rows.
func TestRoundTrip_EveryPair(t *testing.T) {
	set := schema.Engine()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		refs := references(t, e)
		for a := set.Oldest; a < set.Version; a++ {
			for b := a + 1; b <= set.Version; b++ {
				a, b := a, b
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
					if diff := diffRows(rows(t, want.d, want.shape, kept), rows(t, d, want.shape, kept)); len(diff) > 0 {
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
	set := schema.Engine()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		refs := references(t, e)
		for a := set.Oldest; a < set.Version; a++ {
			a := a
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
