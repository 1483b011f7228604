package bookkeeping_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tables are the bookkeeping tables the store owns.
var tables = []string{"schema_version", "schema_compat_version", "applied_schema_deltas", "background_updates", "hsops_engine"}

// writeRE finds a statement that writes rows of a bookkeeping table
// (INSERT, INSERT OR ..., REPLACE, UPDATE, DELETE, TRUNCATE, COPY ... FROM).
var writeRE = regexp.MustCompile(`(?is)\b(insert\s+(or\s+\w+\s+)?into|replace\s+into|update|delete\s+from|truncate(\s+table)?(\s+only)?|copy)\s+"?(` +
	strings.Join(tables, "|") + `)"?\b`)

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// TestStore_IsTheOnlyWriter holds the store to its promise: no Go file of
// the module outside this package (tests apart) holds SQL that writes the
// bookkeeping tables. The schema's SQL files (which queue background
// updates, as Synapse's deltas do) and the Synapse rollback recipes (data
// quoted from Synapse's upgrade notes) are not Go and are run as given.
func TestStore_IsTheOnlyWriter(t *testing.T) {
	root := moduleRoot(t)
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var offenders []string
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if name := e.Name(); path != root && (strings.HasPrefix(name, ".") || path == self) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range writeRE.FindAllString(string(data), -1) {
			rel, _ := filepath.Rel(root, path)
			offenders = append(offenders, rel+": "+strings.Join(strings.Fields(m), " "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(offenders) > 0 {
		t.Errorf("bookkeeping rows written outside package bookkeeping (use its Store):\n  %s", strings.Join(offenders, "\n  "))
	}

	// The pattern is not vacuous: it finds the store's own writes of every
	// table.
	data, err := os.ReadFile("store.go")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, m := range writeRE.FindAllStringSubmatch(string(data), -1) {
		found[m[len(m)-1]] = true
	}
	for _, table := range tables {
		if !found[table] {
			t.Errorf("the pattern finds no write of %s in store.go", table)
		}
	}
}
