package server

import (
	"path/filepath"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/niotest"
)

// TestClientAPI_MatrixNio drives the engine with a real client SDK,
// unmodified: register, login, rooms, a long-poll woken by a message,
// profiles, typing, read markers, tags, account data, filters and
// pagination; then, after a restart, the same client syncs on from its old
// next_batch and gets exactly what it had not seen.
func TestClientAPI_MatrixNio(t *testing.T) {
	py := niotest.Python(t)
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		cfg := testConfig(t, tg.Config, "enable_registration: true\nenable_registration_without_verification: true\n")
		state := filepath.Join(t.TempDir(), "nio.json")
		r := startServer(t, cfg)
		niotest.Run(t, py, "first", state, r.base)
		r.stop()
		r = startServer(t, cfg)
		niotest.Run(t, py, "resume", state, r.base)
		niotest.Run(t, py, "resume", state, r.base, "--no-send")
	})
}
