package engine

import (
	"context"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
)

func TestRegistryStatus(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t, db.SQLite).Open(t)
	s := Schema()
	if _, err := s.Apply(ctx, d, schema.Options{Target: 68}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Updates) == 0 {
		t.Fatal("the upgrade from 68 queued no background update")
	}
	got := s.Updates.Status(ctx, d, st)
	if got.Blocked != nil || len(got.Pending) != len(st.Updates) {
		t.Fatalf("Status: %d pending (blocked: %v), want %d", len(got.Pending), got.Blocked, len(st.Updates))
	}
	next, _ := schema.Next(st.Updates)
	for _, u := range got.Pending {
		if u.Next != (u.Name == next.Name) {
			t.Errorf("%s: Next = %v", u.Name, u.Next)
		}
		if !u.Handled {
			t.Errorf("%s: not handled on an engine database", u.Name)
		}
	}
	synapse := *st
	synapse.Kind = schema.KindSynapse
	for _, u := range s.Updates.Status(ctx, d, &synapse).Pending {
		if u.Handled || u.Left != nil {
			t.Errorf("%s: handled on a Synapse database", u.Name)
		}
	}
}
