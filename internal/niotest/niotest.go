// Package niotest runs testdata/nio/client.py, a client session of the real
// matrix-nio SDK (Debian's python3-matrix-nio, unmodified), against a
// running engine, for the server and journey tests.
package niotest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Python finds a python3 with matrix-nio. Without one the test is skipped,
// or fails under CI=true (.ci/run installs the package).
func Python(t testing.TB) string {
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

// Script is the path of testdata/nio/client.py.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "nio", "client.py")
}

// Run runs a phase ("first", "resume") of the client against base, keeping
// its state in the file state, and returns its output.
func Run(t testing.TB, py, phase, state, base string, args ...string) string {
	t.Helper()
	out, err := exec.Command(py, append([]string{Script(), phase, state, base}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("matrix-nio %s against %s: %v\n%s", phase, base, err, out)
	}
	return string(out)
}
