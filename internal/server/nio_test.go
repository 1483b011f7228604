package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
)

// NioPython finds a Python with matrix-nio (Debian's python3-matrix-nio);
// without one the test is skipped, or fails under CI, whose .ci/run
// installs it.
func nioPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(py, "-c", "import nio").Run(); err == nil {
			return py
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no python3 with matrix-nio: apt-get install -y python3-matrix-nio")
	}
	t.Skip("no python3 with matrix-nio (apt-get install -y python3-matrix-nio)")
	return ""
}

// runNio runs a phase of testdata/nio/client.py against base.
func runNio(t *testing.T, py, phase, state, base string, args ...string) {
	t.Helper()
	script, err := filepath.Abs("../../testdata/nio/client.py")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, append([]string{script, phase, state, base}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nio %s: %v\n%s", phase, err, out)
	}
}

// TestClientAPI_MatrixNio drives the engine with a real client SDK,
// unmodified: register, login, rooms, a long-poll woken by a message,
// profiles, typing, read markers, tags, account data, filters and
// pagination; then, after a restart, the same client syncs on from its old
// next_batch and gets exactly what it had not seen.
func TestClientAPI_MatrixNio(t *testing.T) {
	py := nioPython(t)
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		cfg := testConfig(t, tg.Config, "enable_registration: true\nenable_registration_without_verification: true\n")
		state := filepath.Join(t.TempDir(), "nio.json")
		r := startServer(t, cfg)
		runNio(t, py, "first", state, r.base)
		r.stop()
		r = startServer(t, cfg)
		runNio(t, py, "resume", state, r.base)
		runNio(t, py, "resume", state, r.base, "--no-send")
	})
}
