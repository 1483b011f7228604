//go:build !race

// The kill test runs the real binary (built without the race detector) and
// checks the target between kills in single-goroutine SQL: the detector has
// nothing to find in it and makes its pure-Go SQLite source (100,000 rows
// generated here) ten times slower, minutes of CI. .ci/run runs it in its
// pass without the race detector, as the rollback round trip (see
// docs/testing.md).

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/porter"
	"hsops/internal/portstate"
	"hsops/internal/testbin"
	"hsops/schema"
	"hsops/schema/engine"
)

// TestKill_PortResumesExactly kills the real port_db with SIGKILL at 20
// random moments while it ports a database of more than 100,000 rows, runs
// it again each time, and checks the final result row for row and its
// catalog object for object. The first kills land anywhere in the copy;
// the last ones in the rebuild of the indexes and constraints dropped for
// the copy.
func TestKill_PortResumesExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real process 20 times")
	}
	k := newKillSetup(t)
	// The first kills are spread over the copy: together they get through
	// about half of the resumable batches. Then each run is killed a
	// moment after its first index or constraint build begins (a table's
	// build follows its copy, so the copy goes on until a table is
	// complete): inside CREATE INDEX, ALTER TABLE ... ADD CONSTRAINT or
	// VALIDATE CONSTRAINT, or between them.
	const copyKills, totalKills = 12, 20
	perRun := max(1, k.batches/copyKills)
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, rebuildKills, finished := 0, 0, false
	for kills < totalKills && !finished {
		var phase string
		phase, finished = k.runAndKill(t, kills < copyKills, 1+rnd.Intn(perRun), time.Duration(rnd.Intn(30))*time.Millisecond)
		if !finished {
			kills++
			if phase == "rebuild" {
				rebuildKills++
			}
		}
	}
	t.Logf("%d kills, %d of them in the index rebuilds (finished by itself: %v)", kills, rebuildKills, finished)
	if kills < totalKills {
		t.Fatalf("the port finished after only %d kills: the test wants %d (a larger database, or shorter delays)", kills, totalKills)
	}
	if rebuildKills < totalKills-copyKills {
		t.Fatalf("only %d kills landed in the index rebuilds", rebuildKills)
	}
	k.assertInProgress(t, perRun)
	out, err := exec.Command(k.bin, append(k.args, "--verify")...).CombinedOutput()
	if err != nil {
		t.Fatalf("final run with --verify: %v\n%s", err, out)
	}
	t.Logf("source rows: %d\n%s", k.rows, out)
	k.assertEngineCatalog(t)
}

// killSetup is the kill test's port: the port_db binary, its source and
// target, and what its dry run says it will copy.
type killSetup struct {
	bin  string
	args []string
	tgt  pgtest.Database
	// resumable are the tables whose batches commit with their progress,
	// so a kill after one of them leaves work the next run must not redo.
	resumable map[string]bool
	rows      int64
	batches   int
}

func newKillSetup(t *testing.T) *killSetup {
	dir := t.TempDir()
	k := &killSetup{bin: testbin.Command(t, dir, "hsops/cmd/port_db"), resumable: map[string]bool{}}
	src := filepath.Join(dir, "homeserver.db")
	if err := makeSource(src, gen.Params{Users: 200, Rooms: 20, Messages: 40000, Backfilled: 20, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	k.tgt = pgtest.NewDatabase(t)
	cfg := filepath.Join(dir, "pg.yaml")
	if err := os.WriteFile(cfg, []byte("server_name: example.org\n"+k.tgt.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tb := range dryRun(t, k.bin, src, cfg).Tables {
		k.rows += tb.Copied
		if tb.Strategy == porter.AppendOnly || tb.Strategy == porter.Search {
			k.resumable[tb.Name] = true
			k.batches += int(tb.Copied/batchSize) + 1
		}
	}
	if k.rows < 100000 {
		t.Fatalf("the port would copy only %d rows", k.rows)
	}
	k.args = []string{"--sqlite-database", src, "--postgres-config", cfg, "--batch-size", fmt.Sprint(batchSize), "--jobs", "2"}
	return k
}

// runAndKill runs port_db and kills it delay after it reached its
// moment: (inCopy) its want-th batch of a resumable table, else the start
// of its first index or constraint build. A moment measured from the start
// of the run would, on a loaded machine, often fall before the first
// resumable batch: the runs would then redo the re-copied tables forever.
// It returns the phase the kill landed in, or finished when the run ended
// by itself first.
func (k *killSetup) runAndKill(t *testing.T, inCopy bool, want int, delay time.Duration) (phase string, finished bool) {
	t.Helper()
	cmd := exec.Command(k.bin, append(k.args, "--json")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reached := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		seen, signalled := 0, false
		for sc.Scan() {
			var ev porter.Event
			if signalled || json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			switch {
			case inCopy && ev.Type == "batch" && k.resumable[ev.Table]:
				if seen++; seen == want {
					reached <- "copy"
					signalled = true
				}
			case !inCopy && ev.Type == "rebuild":
				reached <- "rebuild"
				signalled = true
			}
		}
		if !signalled {
			reached <- ""
		}
	}()
	done := make(chan error, 1)
	phase = <-reached
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a run failed: %v", err)
		}
		return phase, true
	case <-time.After(delay):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return phase, false
	}
}

// assertInProgress checks the killed port's target: partly copied, and
// refused as a port in progress.
func (k *killSetup) assertInProgress(t *testing.T, perRun int) {
	t.Helper()
	d := openTarget(t, k.tgt)
	defer d.Close()
	var partial, deferred int64
	for tb := range k.resumable {
		var n int64
		if err := d.QueryRow("SELECT count(*) FROM " + db.QuoteIdent(tb)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		partial += n
	}
	if err := d.QueryRow("SELECT count(*) FROM hsops_port_deferred").Scan(&deferred); err != nil {
		t.Fatal(err)
	}
	if err := portstate.Check(context.Background(), d); !errors.Is(err, portstate.ErrInProgress) {
		t.Errorf("the killed port's target is not refused: %v", err)
	}
	t.Logf("before the final run: %d rows of resumable tables ported (of %d batches, up to %d per killed run), %d indexes and constraints still dropped", partial, k.batches, perRun, deferred)
	if partial == 0 {
		t.Fatal("the killed runs committed nothing: the test did not exercise resumption")
	}
}

// assertEngineCatalog checks that the finished port's schema is exactly
// the engine's (everything dropped is back) and that it is no longer a
// port in progress.
func (k *killSetup) assertEngineCatalog(t *testing.T) {
	t.Helper()
	ref := pgtest.NewDatabase(t)
	rd := openTarget(t, ref)
	defer rd.Close()
	if _, err := engine.Schema().Apply(context.Background(), rd, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	d := openTarget(t, k.tgt)
	defer d.Close()
	bookkeeping := []string{"port_from_sqlite3", "hsops_port", "hsops_port_tables", "hsops_port_deferred"}
	want, err := catalog.Dump(context.Background(), rd, catalog.Options{Exclude: bookkeeping})
	if err != nil {
		t.Fatal(err)
	}
	got, err := catalog.Dump(context.Background(), d, catalog.Options{Exclude: bookkeeping})
	if err != nil {
		t.Fatal(err)
	}
	if diff := catalog.Diff(want, got); len(diff) > 0 {
		t.Fatalf("the ported schema differs from the engine's (- engine, + ported):\n%s", strings.Join(diff, "\n"))
	}
	if err := portstate.Check(context.Background(), d); err != nil {
		t.Fatalf("the finished port is refused: %v", err)
	}
}

const batchSize = 500

// dryRun is port_db --dry-run --json's summary.
func dryRun(t *testing.T, bin, src, cfg string) porter.Result {
	t.Helper()
	out, err := exec.Command(bin, "--sqlite-database", src, "--postgres-config", cfg, "--dry-run", "--json").Output()
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var last struct {
		Event  string        `json:"event"`
		Result porter.Result `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "summary" {
		t.Fatalf("dry run: no summary (%v) in %s", err, lines[len(lines)-1])
	}
	return last.Result
}

func openTarget(t *testing.T, tgt pgtest.Database) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), tgt.Config, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
