package rehearse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
)

// synapseFixture copies the real Synapse v1.98 database.
func synapseFixture(t *testing.T) (config.Database, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir(), "testdata", "shared", "fixtures", "synapse-1.98-sqlite", "homeserver.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "homeserver.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path}, DataStores: []string{"main", "state"}}, path
}

// abortGrace is the tests' Options.AbortGrace: the stand-in, like
// Synapse, never exits by itself once its updates aborted, and is stopped
// after the grace, whatever its length (the default, 2 s, is production's).
const abortGrace = 200 * time.Millisecond

func TestRun_SynapseNeedsPython(t *testing.T) {
	dbc, _ := synapseFixture(t)
	_, err := Run(context.Background(), Options{Config: configFor(t, "localhost", dbc)})
	if !errors.Is(err, ErrNeedPython) || fault.ClassOf(err) != fault.NotOurs || !strings.Contains(fault.HintOf(err), "--python") {
		t.Fatalf("got %v (hint %q)", err, fault.HintOf(err))
	}
	_, err = Run(context.Background(), Options{Config: configFor(t, "localhost", dbc), Python: fakePython(), AbortGrace: abortGrace, ToRelease: "1.98.0"})
	if fault.ClassOf(err) != fault.Usage || !strings.Contains(err.Error(), "1.99.0") {
		t.Fatalf("a release other than --python's: %v", err)
	}
}

func TestRun_SynapseStandIn(t *testing.T) {
	ctx := context.Background()
	dbc, path := synapseFixture(t)
	cfg := configFor(t, "localhost", dbc)
	before, _ := os.ReadFile(path)
	t.Setenv("FAKE_SYNAPSE_BATCH_SIZE", "1")
	rep, err := Run(ctx, Options{Config: cfg, Python: fakePython(), AbortGrace: abortGrace, ToRelease: "1.99.0"})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Databases[0]
	if rep.Kind != "synapse" || rep.Release != "1.99.0" || r.Before.Schema != 83 || r.After.Schema != 84 || len(r.Deltas) != 2 || len(r.Updates) != 2 {
		t.Fatalf("report %+v", rep)
	}
	if u := r.Updates[0]; u.Name != "populate_stats_process_rooms" || !u.OK || u.Rows != 4 || u.Batches != 5 {
		t.Errorf("update %+v", u)
	}
	if rep.BlockingMillis <= 0 || rep.BackgroundMillis <= 0 || rep.PacedMillis < rep.BackgroundMillis+6*1000 {
		t.Errorf("phases: %+v", rep)
	}

	t.Run("failing delta", func(t *testing.T) {
		t.Setenv("FAKE_SYNAPSE_FAIL_DELTA", "84/02_events_sender_idx.sql.sqlite")
		rep, err := Run(ctx, Options{Config: cfg, Python: fakePython(), AbortGrace: abortGrace})
		var f *Failure
		if !errors.As(err, &f) || fault.ClassOf(err) != fault.Blockers {
			t.Fatalf("got %v", err)
		}
		if f.Phase != "schema" || f.Step != "84/02_events_sender_idx.sql.sqlite" || !strings.Contains(f.Cause, "fake_synapse_missing_table") {
			t.Errorf("failure %+v", f)
		}
		if d := rep.Databases[0].Deltas; len(d) != 2 || !d[0].OK || d[1].OK {
			t.Errorf("deltas %+v", d)
		}
	})
	t.Run("failing update", func(t *testing.T) {
		t.Setenv("FAKE_SYNAPSE_FAIL_UPDATE", "room_event_counts_room_id_idx")
		rep, err := Run(ctx, Options{Config: cfg, Python: fakePython(), AbortGrace: abortGrace})
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("got %v", err)
		}
		if f.Phase != "background" || f.Step != "room_event_counts_room_id_idx" {
			t.Errorf("failure %+v", f)
		}
		u := rep.Databases[0].Updates
		if len(u) != 2 || !u[0].OK || u[1].OK || !u[1].Ran {
			t.Errorf("updates %+v", u)
		}
		if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[len(rep.Notes)-1], "it was stopped") {
			t.Errorf("notes %v", rep.Notes)
		}
	})
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the original changed")
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

// TestRun_SynapseDuplicatedEdges rehearses Synapse's own failure on both
// engines: the unique index update fails, Synapse hangs, and the fix is the
// repair.
func TestRun_SynapseDuplicatedEdges(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		dbc, d := engineDB(t, e, 69, true, true)
		d.Close()
		rep, err := Run(context.Background(), Options{Config: configFor(t, "example.org", dbc), Python: fakePython(), AbortGrace: abortGrace, ConfigArg: "hs.yaml"})
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("got %v", err)
		}
		if f.Step != "state_group_edges_unique_idx" || !strings.Contains(f.Fix, "update_database repair state-group-edges --database-config <config>") {
			t.Errorf("failure %+v", f)
		}
		if rep.Databases[0].After.Schema != 84 {
			t.Errorf("report %+v", rep.Databases[0])
		}
		if left := scratchLeft(t, dbc); len(left) > 0 {
			t.Fatalf("scratch left: %v", left)
		}
	})
}
