package repair_test

import (
	"context"
	"errors"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/repair"
	"hsops/schema"
	"hsops/schema/engine"
)

func edgeRows(t *testing.T, tg dbtest.Target) int {
	t.Helper()
	d := tg.Open(t)
	defer d.Close()
	var n int
	if err := d.QueryRow("SELECT count(*) FROM state_group_edges").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStateGroupEdges(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		tg := dbtest.New(t, e)
		d := tg.Open(t)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 69}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec("INSERT INTO state_group_edges VALUES (2, 1), (2, 1), (2, 1), (3, 2), (4, 3), (4, 3)"); err != nil {
			t.Fatal(err)
		}
		d.Close()
		cfg := &config.Config{Databases: []config.Database{tg.Config}}

		r, err := repair.StateGroupEdges(ctx, cfg, repair.Options{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != "engine" || !r.Engine || r.Result.Pairs != 2 || r.Result.Removed != 3 || len(r.Duplicates) != 2 || r.More() != 0 {
			t.Errorf("dry run: %+v, result %+v", r, r.Result)
		}
		if n := edgeRows(t, tg); n != 6 {
			t.Fatalf("the dry run changed the table: %d rows", n)
		}

		r, err = repair.StateGroupEdges(ctx, cfg, repair.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Result.Removed != 3 || r.Result.Remaining != 3 {
			t.Errorf("repair: %+v", r.Result)
		}
		if n := edgeRows(t, tg); n != 3 {
			t.Errorf("after the repair: %d rows, want 3", n)
		}
	})
}

func TestStateGroupEdges_RefusesEmptyDatabase(t *testing.T) {
	tg := dbtest.New(t, db.SQLite)
	tg.Open(t).Close()
	_, err := repair.StateGroupEdges(context.Background(), &config.Config{Databases: []config.Database{tg.Config}}, repair.Options{})
	if !errors.Is(err, schema.ErrNotHomeserver) {
		t.Errorf("an empty database: %v, want ErrNotHomeserver", err)
	}
}
