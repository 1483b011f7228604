package rehearse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/repair"
	"hsops/schema"
)

// copyFixture copies the schema-69 fixture with duplicated edges into a
// fresh directory.
func copyFixture(t *testing.T) (config.Database, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir(), "testdata", "fixtures", "schema69-duplicate-edges.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path}, DataStores: []string{"main", "state"}}, path
}

func TestRun_SQLiteDuplicatedEdges_FailsThenPassesAfterRepair(t *testing.T) {
	ctx := context.Background()
	dbc, path := copyFixture(t)
	cfg := configFor(t, "example.org", dbc)
	before, _ := os.ReadFile(path)
	rep, err := Run(ctx, Options{Config: cfg, ConfigArg: "hs.yaml"})
	var f *Failure
	if !errors.As(err, &f) || fault.ClassOf(err) != fault.Blockers {
		t.Fatalf("want a failed rehearsal, got %v", err)
	}
	if f.Phase != "background" || f.Step != "state_group_edges_unique_idx" || f.Fix != repair.RepairEdgesCommand {
		t.Errorf("failure %+v", f)
	}
	if rep.Passed || rep.Databases[0].Copy.Method != "locked" || len(rep.Databases[0].Deltas) == 0 {
		t.Errorf("report %+v", rep)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the original changed")
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}

	d, err := db.OpenSQLite(ctx, path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repair.RepairEdges(ctx, d, false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	repaired, _ := os.ReadFile(path)
	rep, err = Run(ctx, Options{Config: cfg, ConfigArg: "hs.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Databases[0]
	if !rep.Passed || r.Before.Schema != 69 || r.After.Schema != 83 || len(r.Updates) == 0 || rep.BlockingMillis <= 0 {
		t.Errorf("report %+v", rep)
	}
	for _, u := range r.Updates {
		if !u.OK || !u.Ran || u.Rows < 1 {
			t.Errorf("update %+v", u)
		}
	}
	for _, c := range r.Checks {
		if c.Status != "ok" {
			t.Errorf("check %+v", c)
		}
	}
	after, _ = os.ReadFile(path)
	if !bytes.Equal(repaired, after) {
		t.Fatal("the original changed")
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

func TestRun_KeepAndClean(t *testing.T) {
	ctx := context.Background()
	dbc, path := copyFixture(t)
	cfg := configFor(t, "example.org", dbc)
	rep, err := Run(ctx, Options{Config: cfg, ToSchema: 75, Keep: true})
	if err == nil {
		t.Fatal("want the duplicated edges to fail the rehearsal")
	}
	kept := rep.Databases[0].Copy.Kept
	if !strings.Contains(kept, "hsops-rehearsed-old.db-") {
		t.Fatalf("kept %q", kept)
	}
	cp, err := db.OpenSQLite(ctx, kept, db.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := schema.ReadState(ctx, cp, cp)
	cp.Close()
	if err != nil || st.Version != 75 {
		t.Fatalf("the kept copy is at %d (%v)", st.Version, err)
	}
	// A stale copy (a killed rehearsal) and one in use.
	dir := filepath.Dir(path)
	stale := filepath.Join(dir, "hsops-rehearse-old.db-20200101-000000-1")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	busy, err := lockDir(filepath.Join(dir, "hsops-rehearse-old.db-20200101-000000-2"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.release()
	// The next rehearsal removes the stale copy only.
	rep, _ = Run(ctx, Options{Config: cfg, ToSchema: 70})
	if len(rep.Cleaned) != 1 || rep.Cleaned[0] != stale {
		t.Errorf("cleaned %v", rep.Cleaned)
	}
	if _, err := os.Stat(filepath.Dir(kept)); err != nil {
		t.Errorf("the kept copy was removed: %v", err)
	}
	removed, inUse, err := Clean(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || len(inUse) != 1 || !strings.Contains(removed[0], "hsops-rehearsed-") {
		t.Errorf("removed %v, in use %v", removed, inUse)
	}
	busy.release()
	if removed, _, _ := Clean(ctx, cfg, ""); len(removed) != 1 {
		t.Errorf("removed %v", removed)
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

func TestRun_InterruptedDropsTheCopy(t *testing.T) {
	dbc, _ := copyFixture(t)
	cfg := configFor(t, "example.org", dbc)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, Options{Config: cfg, OnEvent: func(ev Event) {
		if ev.Type == "delta" {
			cancel()
		}
	}})
	if !fault.IsInterrupted(err) {
		t.Fatalf("want an interruption, got %v", err)
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

func TestRun_Refusals(t *testing.T) {
	ctx := context.Background()
	dbc, _ := copyFixture(t)
	cfg := configFor(t, "example.org", dbc)
	for _, c := range []struct {
		name  string
		o     Options
		class fault.Class
	}{
		{"both targets", Options{ToSchema: 80, ToRelease: "1.90.0"}, fault.Usage},
		{"a target below the database", Options{ToSchema: 68}, fault.Version},
		{"a release the engine does not reach", Options{ToRelease: "1.20.0"}, fault.Version},
	} {
		c.o.Config = cfg
		_, err := Run(ctx, c.o)
		if fault.ClassOf(err) != c.class {
			t.Errorf("%s: %v (class %v), want class %v", c.name, err, fault.ClassOf(err), c.class)
		}
	}
	// An empty database, and a config that points nowhere.
	empty := filepath.Join(t.TempDir(), "empty.db")
	if d, err := db.OpenSQLite(ctx, empty, db.Options{Create: true}); err == nil {
		d.Close()
	}
	_, err := Run(ctx, Options{Config: configFor(t, "x", config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": empty}})})
	if !errors.Is(err, ErrNothingToCopy) {
		t.Errorf("empty database: %v", err)
	}
	_, err = Run(ctx, Options{Config: configFor(t, "x", config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": empty + ".missing"}})})
	if !errors.Is(err, db.ErrNotFound) {
		t.Errorf("missing database: %v", err)
	}
	// Nothing to do: at the target, nothing pending.
	rep, err := Run(ctx, Options{Config: cfg, ToSchema: 69})
	if err != nil || !rep.Passed || rep.Nothing == "" {
		t.Errorf("nothing to do: %+v %v", rep, err)
	}
}
