package repair_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/repair"
	"hsops/schema"
	"hsops/schema/engine"
)

// snapshot is everything the test compares to prove "unchanged": the
// catalog and the bookkeeping rows.
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

func mustApply(t *testing.T, s *schema.Set, d *db.DB, opts schema.Options) {
	t.Helper()
	if _, err := s.Apply(context.Background(), d, opts); err != nil {
		t.Fatalf("apply (target %d): %v", opts.Target, err)
	}
}

// The failure Synapse's operators know from v1.60.0: duplicated
// state_group_edges rows make the unique index update fail for ever. The
// error says so, the repair removes exactly the extra rows, and the update
// then completes.
func TestStateGroupEdges_DuplicatesFailThenRepair(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		s := engine.Schema()
		d := dbtest.New(t, e).Open(t)
		mustApply(t, s, d, schema.Options{Target: 69})
		pairs := [][2]int{{2, 1}, {3, 2}, {4, 3}, {5, 4}}
		copies := []int{3, 1, 2, 1} // (2,1) three times, (4,3) twice
		for i, p := range pairs {
			for c := 0; c < copies[i]; c++ {
				if _, err := d.Exec(d.Rebind("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)"), p[0], p[1]); err != nil {
					t.Fatal(err)
				}
			}
		}
		mustApply(t, s, d, schema.Options{})
		r := &schema.Runner{DB: d, Registry: s.Updates, Env: schema.Env{Engine: e, ServerName: "example.org"}}
		err := r.RunAll(ctx)
		var dup *repair.DuplicateEdgesError
		if !errors.As(err, &dup) || dup.Pairs != 2 || dup.ExtraRows != 3 {
			t.Fatalf("got %v, want a DuplicateEdgesError with 2 pairs and 3 extra rows", err)
		}
		var ue *schema.UpdateError
		if !errors.As(err, &ue) || ue.Update != "state_group_edges_unique_idx" {
			t.Fatalf("got %v, want the failing update named", err)
		}
		if hint := fault.HintOf(err); !strings.Contains(hint, repair.RepairEdgesCommand) {
			t.Errorf("hint %q should name the repair", hint)
		}

		before := snapshot(t, d)
		res, err := repair.RepairEdges(ctx, d, true)
		if err != nil || res.Pairs != 2 || res.Removed != 3 || !res.DryRun {
			t.Fatalf("dry run: got %+v, %v", res, err)
		}
		if snapshot(t, d) != before {
			t.Fatal("the dry run changed the database")
		}
		res, err = repair.RepairEdges(ctx, d, false)
		if err != nil || res.Removed != 3 || res.Remaining != 4 {
			t.Fatalf("repair: got %+v, %v; want 3 removed, 4 left", res, err)
		}
		for _, p := range pairs {
			var n int
			if err := d.QueryRow(d.Rebind("SELECT count(*) FROM state_group_edges WHERE state_group = ? AND prev_state_group = ?"), p[0], p[1]).Scan(&n); err != nil || n != 1 {
				t.Errorf("pair %v present %d times (%v), want once", p, n, err)
			}
		}
		if err := r.RunAll(ctx); err != nil {
			t.Fatalf("updates after the repair: %v", err)
		}
		if res, err := repair.RepairEdges(ctx, d, false); err != nil || res.Removed != 0 {
			t.Errorf("second repair: got %+v, %v; want nothing to do", res, err)
		}
	})
}
