package bookkeeping_test

import (
	"context"
	"database/sql"
	"reflect"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/bookkeeping"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// inTx runs fn in a transaction that is committed.
func inTx(t *testing.T, d *db.DB, fn func(tx *sql.Tx) error) {
	t.Helper()
	if err := schema.InTx(context.Background(), d, fn); err != nil {
		t.Fatal(err)
	}
}

// The store's writes on both engines: one-row tables replaced, deltas
// recorded and forgotten above a version, the mark lowered, the queue
// idempotent, progress saved and read, updates dequeued.
func TestStore_Rows(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := dbtest.New(t, e).Open(t)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 83}); err != nil {
			t.Fatal(err)
		}
		book := bookkeeping.New(e)
		inTx(t, d, func(tx *sql.Tx) error {
			for _, v := range []int{80, 81} {
				if err := book.SetVersion(ctx, tx, v, true); err != nil {
					return err
				}
				if err := book.SetCompat(ctx, tx, v-4); err != nil {
					return err
				}
			}
			for _, v := range []int{80, 81, 82} {
				if err := book.RecordDelta(ctx, tx, v, "x/01test.sql"); err != nil {
					return err
				}
			}
			if err := book.ForgetDeltasAbove(ctx, tx, 80); err != nil {
				return err
			}
			return book.LowerMark(ctx, tx, 79)
		})
		var zero bookkeeping.Store // reads take no arguments: the zero Store serves them
		v, upgraded, ok, err := zero.Version(ctx, d)
		if err != nil || !ok || v != 81 || !upgraded {
			t.Errorf("version: got %d/%v/%v (%v), want 81, upgraded", v, upgraded, ok, err)
		}
		var rows int
		if err := d.QueryRow("SELECT count(*) FROM schema_version").Scan(&rows); err != nil || rows != 1 {
			t.Errorf("schema_version has %d rows (%v), want 1", rows, err)
		}
		if c, ok, err := zero.Compat(ctx, d); err != nil || !ok || c != 77 {
			t.Errorf("compat: got %d/%v (%v), want 77", c, ok, err)
		}
		applied, err := zero.Applied(ctx, d)
		if err != nil || !reflect.DeepEqual(applied, []bookkeeping.AppliedDelta{{Version: 80, File: "x/01test.sql"}}) {
			t.Errorf("applied: got %v (%v), want only 80's", applied, err)
		}
		if m, err := zero.Mark(ctx, d); err != nil || m == nil || m.CreatedVersion != 79 || m.Engine != engine.Name {
			t.Errorf("mark: got %+v (%v), want created at 79 by %s", m, err, engine.Name)
		}

		first := bookkeeping.Update{Name: "a_update", Ordering: 7}
		second := bookkeeping.Update{Name: "b_update", DependsOn: "a_update", Progress: `{"last":"x"}`}
		inTx(t, d, func(tx *sql.Tx) error {
			for _, u := range []bookkeeping.Update{first, second} {
				if queued, err := book.Enqueue(ctx, tx, u); err != nil || !queued {
					t.Errorf("enqueue %s: got %v (%v), want queued", u.Name, queued, err)
				}
			}
			if err := book.SaveProgress(ctx, tx, "a_update", `{"n":1}`); err != nil {
				return err
			}
			queued, err := book.Enqueue(ctx, tx, bookkeeping.Update{Name: "a_update", Progress: `{"n":0}`})
			if err != nil || queued {
				t.Errorf("enqueue again: got %v (%v), want left as it is", queued, err)
			}
			return nil
		})
		got, err := zero.Updates(ctx, d)
		want := []bookkeeping.Update{
			{Name: "b_update", DependsOn: "a_update", Progress: `{"last":"x"}`},
			{Name: "a_update", Ordering: 7, Progress: `{"n":1}`},
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("queue: got %+v (%v), want %+v", got, err, want)
		}
		inTx(t, d, func(tx *sql.Tx) error {
			p, queued, err := book.Progress(ctx, tx, "a_update", true)
			if err != nil || !queued || p != `{"n":1}` {
				t.Errorf("progress: got %q/%v (%v)", p, queued, err)
			}
			if err := book.Dequeue(ctx, tx, "a_update"); err != nil {
				return err
			}
			if _, queued, err := book.Progress(ctx, tx, "a_update", false); err != nil || queued {
				t.Errorf("after dequeue: queued %v (%v)", queued, err)
			}
			return book.Dequeue(ctx, tx, "never_queued")
		})
	})
}
