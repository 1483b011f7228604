package journey

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaries_LinkNoTestHelpers: no shipped binary links the testing
// package (a test helper imported by a command would bring it in).
func TestBinaries_LinkNoTestHelpers(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "hsops/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasSuffix(pkg, "/pgtest") || strings.HasSuffix(pkg, "/dbtest") || strings.HasSuffix(pkg, "/scripttest") {
			t.Errorf("a command links %s: move what it needs out of the test helpers (e.g. internal/pgcluster)", pkg)
		}
	}
}
