package porter

import (
	"path/filepath"
	"testing"

	"hsops/internal/clienttest"
	"hsops/internal/config"
	"hsops/internal/pgtest"
)

// TestPort_ClientDataIsExact ports a database that clients filled through
// the engine's endpoints (receipts in and out of threads, profiles with
// full_user_id, filters, account data, tags ...), and checks every table
// came over exactly (the journey then has a client sync on from there).
func TestPort_ClientDataIsExact(t *testing.T) {
	src := filepath.Join(t.TempDir(), "homeserver.db")
	clienttest.Populate(t, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": src}})
	tgt := pgtest.NewDatabase(t)
	res := mustPort(t, src, tgt.Config)
	assertExact(t, res)
	for _, tbl := range []string{"receipts_linearized", "receipts_graph", "account_data", "room_account_data", "room_tags", "room_tags_revisions", "user_filters", "profiles"} {
		if n := copied(res, tbl); n <= 0 {
			t.Errorf("%s: %d rows copied", tbl, n)
		}
	}
}
