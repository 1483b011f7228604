//go:build !race

// The kill tests run the real binary (built without the race detector) and
// check the database between kills in single-goroutine SQL: the detector
// has nothing to find in them and makes their pure-Go SQLite checks ten
// times slower, minutes of CI. .ci/run runs them in its pass without the
// race detector, as the rollback round trip (see docs/testing.md).

package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
	"hsops/schema/engine"
)

// TestKill_BackgroundUpdatesResume kills update_database
// --run-background-updates with SIGKILL at increasing moments, runs it again
// each time, and compares the end result with an uninterrupted run: the same
// schema and the same data, no batch lost or done twice.
func TestKill_BackgroundUpdatesResume(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real process many times")
	}
	bin := buildTool(t)
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		dir := t.TempDir()
		victim, reference := twins(t, e, false)
		refConfig := writeConfig(t, dir, reference.Config)
		if out, err := exec.Command(bin, "--database-config", refConfig, "--run-background-updates").CombinedOutput(); err != nil {
			t.Fatalf("uninterrupted run: %v\n%s", err, out)
		}

		victimConfig := writeConfig(t, dir, victim.Config)
		kills := killUntilDone(t, bin, []string{"--database-config", victimConfig, "--run-background-updates"}, 25*time.Millisecond, 5*time.Millisecond, nil)
		if kills < 5 {
			t.Fatalf("only %d kills happened: the test did not exercise resumption", kills)
		}
		t.Logf("%s: killed %d times before a run completed", e, kills)
		want := dbtest.Contents(t, reference.Open(t))
		got := dbtest.Contents(t, victim.Open(t))
		if got != want {
			t.Fatalf("after %d kills the database differs from an uninterrupted run:\n%s", kills, dbtest.DiffLines(want, got))
		}
	})
}

// TestKill_RollbackIsAtomic kills update_database rollback with SIGKILL at
// increasing moments: after each kill the database is exactly as it was
// before the rollback or exactly as an uninterrupted rollback leaves it,
// never in between.
func TestKill_RollbackIsAtomic(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real process many times")
	}
	bin := buildTool(t)
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		dir := t.TempDir()
		victim, reference := twins(t, e, true)
		args := func(config string) []string {
			return []string{"rollback", "--database-config", config, "--to-schema", "68", "--allow-data-loss", "--yes", "--no-backup"}
		}
		vd := victim.Open(t)
		start := rollbackContents(t, vd)
		vd.Close()
		refConfig := writeConfig(t, dir, reference.Config)
		t0 := time.Now()
		if out, err := exec.Command(bin, args(refConfig)...).CombinedOutput(); err != nil {
			t.Fatalf("uninterrupted rollback: %v\n%s", err, out)
		}
		took := time.Since(t0)
		target := rollbackContents(t, reference.Open(t))

		victimConfig := writeConfig(t, dir, victim.Config)
		kills := killUntilDone(t, bin, args(victimConfig), 5*time.Millisecond, 6*time.Millisecond, func(kill int, delay time.Duration) {
			d := victim.Open(t)
			waitForSessionsToEnd(t, d)
			got := rollbackContents(t, d)
			d.Close()
			if got != start && got != target {
				t.Fatalf("after kill %d (at %v) the database is neither as it was nor rolled back:\n%s", kill, delay, dbtest.DiffLines(start, got))
			}
		})
		if kills < 5 {
			t.Fatalf("only %d kills happened", kills)
		}
		t.Logf("%s: an uninterrupted rollback took %v; killed %d times, each leaving the database as it was", e, took, kills)
		if got := rollbackContents(t, victim.Open(t)); got != target {
			t.Fatalf("the completed rollback differs from an uninterrupted one:\n%s", dbtest.DiffLines(target, got))
		}
	})
}

// rollbackContents is the database's contents with hsops_engine's record
// of a rollback reduced to its versions: the time it records differs from
// one run to the next.
func rollbackContents(t *testing.T, d *db.DB) string {
	t.Helper()
	c := dbtest.Contents(t, d, "hsops_engine")
	var created, from, to sql.NullInt64
	if err := d.QueryRow("SELECT created_version, rolled_back_from, rolled_back_to FROM hsops_engine").Scan(&created, &from, &to); err != nil {
		if err := d.QueryRow("SELECT created_version FROM hsops_engine").Scan(&created); err != nil {
			t.Fatal(err)
		}
	}
	return c + fmt.Sprintf("\nhsops_engine: created at %v, rolled back %v -> %v", created, from, to)
}

// waitForSessionsToEnd waits until PostgreSQL has ended the sessions of a
// killed update_database (it notices the client is gone and rolls its
// transaction back).
func waitForSessionsToEnd(t *testing.T, d *db.DB) {
	t.Helper()
	if d.Engine != db.Postgres {
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var n int
		err := d.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'hsops update_database%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the killed process's sessions did not end")
}

// killUntilDone runs the tool with args again and again, killing it with
// SIGKILL after a delay that grows by step each time, until a run finishes
// (it must succeed). afterKill, when set, inspects the database after each
// kill. It returns the number of kills.
func killUntilDone(t *testing.T, bin string, args []string, first, step time.Duration, afterKill func(kill int, delay time.Duration)) int {
	t.Helper()
	kills := 0
	for delay := first; ; delay += step {
		if delay > 30*time.Second {
			t.Fatal("the run never finished")
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run after %d kills failed: %v", kills, err)
			}
			return kills
		case <-time.After(delay):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
			if afterKill != nil {
				afterKill(kills, delay)
			}
		}
	}
}

// twins are two identical databases (the victim of the kills and the
// reference), seeded at 68 and upgraded to 83, with their background
// updates run when done is set.
func twins(t *testing.T, e db.Engine, done bool) (victim, reference dbtest.Target) {
	t.Helper()
	ctx := context.Background()
	s := engine.Schema()
	victim, reference = dbtest.New(t, e), dbtest.New(t, e)
	for _, tg := range []dbtest.Target{victim, reference} {
		d := tg.Open(t)
		if _, err := s.Apply(ctx, d, schema.Options{Target: 68}); err != nil {
			t.Fatal(err)
		}
		seedForUpdates(t, d, 6000)
		if _, err := s.Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
			t.Fatal(err)
		}
		// The twins differ only in when they were created.
		if _, err := d.ExecContext(ctx, "UPDATE hsops_engine SET created_ts = 0"); err != nil {
			t.Fatal(err)
		}
		if done {
			r := &schema.Runner{DB: d, Registry: s.Updates, Env: schema.Env{Engine: e, ServerName: "example.org"}}
			if err := r.RunAll(ctx); err != nil {
				t.Fatal(err)
			}
		}
		d.Close()
	}
	return victim, reference
}
