package server

import (
	"context"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
	"hsops/schema/engine"
)

// TestServerVersion_NamesItsDatabase: server_version carries the identity
// of the database the process serves (its engine mark and its versions
// after the start-up upgrade), which upgrade-check compares with the
// database it reads.
func TestServerVersion_NamesItsDatabase(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		tg := dbtest.New(t, e)
		d := tg.Open(t)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 75}); err != nil {
			t.Fatal(err)
		}
		st, err := schema.ReadState(ctx, d, d.DB)
		if err != nil {
			t.Fatal(err)
		}
		r := startServer(t, testConfig(t, tg.Config, ""))
		code, out := call(t, "GET", r.base+"/_synapse/admin/v1/server_version", "", nil)
		if code != 200 || out["engine"] != "hsops" {
			t.Fatalf("server_version: %d %v", code, out)
		}
		got, _ := out["database"].(map[string]any)
		want := map[string]any{"engine": engine.Name, "created_ts": float64(st.Mark.CreatedTS), "schema_version": float64(83), "compat_version": float64(83)}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("database.%s = %v, want %v (got %v)", k, got[k], v, got)
			}
		}
	})
}
