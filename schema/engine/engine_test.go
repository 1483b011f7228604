package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/releases"
	"hsops/schema"
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

func runUpdates(t *testing.T, s *schema.Set, d *db.DB) {
	t.Helper()
	r := &schema.Runner{DB: d, Registry: s.Updates, Env: schema.Env{Engine: d.Engine, ServerName: "example.org"}}
	if err := r.RunAll(context.Background()); err != nil {
		t.Fatalf("run background updates: %v", err)
	}
}

func TestCreate_Fresh83(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := dbtest.New(t, e).Open(t)
		s := Schema()
		res := mustApply(t, s, d, schema.Options{})
		if !res.Plan.Create || res.Plan.Snapshot != 83 || res.Version != 83 {
			t.Fatalf("got create=%v snapshot=%d version=%d, want a database created from snapshot 83", res.Plan.Create, res.Plan.Snapshot, res.Version)
		}
		st, err := schema.ReadState(ctx, d, d.DB)
		if err != nil {
			t.Fatal(err)
		}
		if st.Kind != schema.KindEngine || st.Version != 83 || st.Upgraded || st.Compat != 83 || st.Mark == nil || st.Mark.CreatedVersion != 83 {
			t.Fatalf("got %+v, want engine database at 83 (not upgraded), compat 83, marked", st)
		}
		if len(st.Updates) != 0 {
			t.Errorf("got pending updates %v on a fresh database, want none", st.Updates)
		}
		// A second run has nothing to do and writes nothing.
		before := snapshot(t, d)
		res = mustApply(t, s, d, schema.Options{})
		if !res.Plan.Empty() {
			t.Errorf("second run planned %d steps, want none", len(res.Plan.Steps))
		}
		if after := snapshot(t, d); after != before {
			t.Error("second run changed the database")
		}
	})
}

// TestUpgrade_EveryVersionReachesTheSameSchema is the schema identity test:
// a database created at any version from 68 to 82 and upgraded to 83 (with
// its background updates run) has exactly the schema of a fresh database
// created from the 83 snapshot.
func TestUpgrade_EveryVersionReachesTheSameSchema(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Schema()
		fresh := dbtest.New(t, e).Open(t)
		mustApply(t, s, fresh, schema.Options{})
		want := dbtest.Dump(t, fresh)
		if len(want.Lines) < 300 {
			t.Fatalf("fresh catalog has only %d lines", len(want.Lines))
		}
		for v := s.Oldest; v < s.Version; v++ {
			// -short: from the oldest (every delta), the middle and the
			// newest but one; CI runs every version.
			if testing.Short() && v != s.Oldest && v != (s.Oldest+s.Version)/2 && v != s.Version-1 {
				continue
			}
			t.Run(fmt.Sprint(v), func(t *testing.T) {
				t.Parallel()
				d := dbtest.New(t, e).Open(t)
				res := mustApply(t, s, d, schema.Options{Target: v})
				if res.Version != v {
					t.Fatalf("created at %d, want %d", res.Version, v)
				}
				mustApply(t, s, d, schema.Options{})
				runUpdates(t, s, d)
				if diff := catalog.Diff(dbtest.Dump(t, d), want); len(diff) > 0 {
					t.Fatalf("schema after %d -> 83 differs from a fresh 83:\n%s", v, strings.Join(diff, "\n"))
				}
				st, err := schema.ReadState(context.Background(), d, d.DB)
				if err != nil {
					t.Fatal(err)
				}
				if st.Version != 83 || st.Compat != 83 || !st.Upgraded {
					t.Errorf("got version %d compat %d upgraded %v, want 83/83/true", st.Version, st.Compat, st.Upgraded)
				}
			})
		}
	})
}

func TestCatalog_SeesADifference(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := Schema()
		a := dbtest.New(t, e).Open(t)
		b := dbtest.New(t, e).Open(t)
		mustApply(t, s, a, schema.Options{})
		mustApply(t, s, b, schema.Options{})
		if _, err := b.Exec("CREATE INDEX extra_idx ON users (password_hash)"); err != nil {
			t.Fatal(err)
		}
		if diff := catalog.Diff(dbtest.Dump(t, a), dbtest.Dump(t, b)); len(diff) != 1 || !strings.Contains(diff[0], "extra_idx") {
			t.Fatalf("got diff %v, want exactly the extra index", diff)
		}
	})
}

// The compat version recorded at each schema version is that of the last
// Synapse release with that schema version (75 never shipped).
func TestCompat_MatchesTheReleaseFacts(t *testing.T) {
	last := map[int]int{}
	for _, f := range releases.SchemaFacts() {
		last[f.Schema] = f.Compat
	}
	s := Schema()
	for v := s.Oldest; v <= s.Version; v++ {
		want, shipped := last[v]
		if !shipped {
			continue
		}
		if got := s.CompatFor(v); got != want {
			t.Errorf("schema %d records compat %d, the last release with it had %d", v, got, want)
		}
	}
}
