package schema

import (
	"context"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/dbtest"
)

func TestSmoke(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		s := Engine()
		a := dbtest.New(t, e).Open(t)
		if _, err := s.Apply(ctx, a, Options{Target: 68}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, a, Options{}); err != nil {
			t.Fatal(err)
		}
		r := &Runner{DB: a, Registry: s.Updates, Env: Env{Engine: e}}
		if err := r.RunAll(ctx); err != nil {
			t.Fatal(err)
		}
		b := dbtest.New(t, e).Open(t)
		if _, err := s.Apply(ctx, b, Options{}); err != nil {
			t.Fatal(err)
		}
		ca, err := catalog.Dump(ctx, a, catalog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := catalog.Dump(ctx, b, catalog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d / %d lines; sample: %q %q", len(ca.Lines), len(cb.Lines), ca.Lines[0], ca.Lines[len(ca.Lines)/2])
		for _, l := range catalog.Diff(ca, cb) {
			t.Log(l)
		}
	})
}
