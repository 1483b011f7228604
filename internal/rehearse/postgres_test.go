package rehearse

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/repair"
	"hsops/internal/rowsum"
	"hsops/schema"
)

// sums checksums every table through q.
func sums(t *testing.T, ctx context.Context, q db.Querier, tables []string) map[string]rowsum.Sum {
	t.Helper()
	out := map[string]rowsum.Sum{}
	shim := &db.DB{Engine: db.Postgres}
	for _, tbl := range tables {
		cols, err := rowsum.Columns(ctx, shim, q, tbl)
		if err != nil {
			t.Fatal(err)
		}
		s, err := rowsum.Table(ctx, q, db.QuoteIdent(tbl), cols)
		if err != nil {
			t.Fatal(err)
		}
		out[tbl] = s
	}
	return out
}

// writer keeps inserting into a table of the source until stopped, as a
// serving homeserver would: flat out, or with -short a row every
// millisecond (flat out it writes some 10,000 rows a second, which the copy
// and the checksums then read, for the same assertions: writes land before,
// during and after the snapshot either way).
func writer(t *testing.T, d *db.DB) (stop func() int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.ExecContext(ctx, "CREATE TABLE rehearsal_writes (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := d.ExecContext(ctx, "INSERT INTO rehearsal_writes (note) VALUES ('written while copying')"); err != nil {
				t.Errorf("the writer failed: %v", err)
				return
			}
			n.Add(1)
			if testing.Short() {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return n.Load()
	}
}

// TestCopyPostgres_SnapshotEqualsTheSourceAtTheSnapshot copies a database a
// homeserver is connected to and writing: the copy is made from one
// snapshot, its rows equal the source's at that snapshot table by table
// (checksums read by another session that joined the snapshot), its schema
// is the source's object by object, its sequences are ahead of its rows,
// and the source kept taking writes meanwhile.
func TestCopyPostgres_SnapshotEqualsTheSourceAtTheSnapshot(t *testing.T) {
	ctx := context.Background()
	dbc, d := engineDB(t, db.Postgres, 83, false, false)
	stop := writer(t, d)
	tables, err := d.Tables(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	scratch := pgScratchName(dbc.DBName(), "test_1")
	dropScratch(t, dbc, scratch)
	maint, err := maintenance(ctx, dbc, appName(scratch))
	if err != nil {
		t.Fatal(err)
	}
	defer maint.Close(ctx)

	var atSnapshot map[string]rowsum.Sum
	cc, err := db.PostgresConnConfig(dbc, "test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := copyPostgres(ctx, maint, dbc, scratch, pgCopyOptions{Jobs: 3, Verify: true, OnSnapshot: func(id string) {
		sdb := stdlib.OpenDB(*cc)
		defer sdb.Close()
		conn, err := sdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, s := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SET TRANSACTION SNAPSHOT '" + id + "'"} {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		atSnapshot = sums(t, ctx, conn, tables)
		_, _ = conn.ExecContext(ctx, "COMMIT")
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Let the homeserver write after the copy too, then stop it.
	var copied int64
	cp, err := db.Open(ctx, db.WithDBName(dbc, scratch), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if err := cp.QueryRowContext(ctx, "SELECT count(*) FROM rehearsal_writes").Scan(&copied); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var n int64
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM rehearsal_writes").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > copied {
			break
		}
	}
	written := stop()

	if c.Method != "snapshot" || !c.Verified || c.Tables != len(tables) {
		t.Errorf("copy %+v", c)
	}
	got := sums(t, ctx, cp, tables)
	for _, tbl := range tables {
		if got[tbl] != atSnapshot[tbl] {
			t.Errorf("%s: %s in the copy, %s in the source at the snapshot", tbl, got[tbl], atSnapshot[tbl])
		}
	}
	if written <= copied {
		t.Errorf("the source took %d writes, the copy has %d: no write landed after the snapshot", written, copied)
	}
	if diff := catalog.Diff(dbtest.Dump(t, d), dbtest.Dump(t, cp)); len(diff) > 0 {
		t.Errorf("the copy's schema differs:\n%v", diff)
	}
	var next, maxID int64
	if err := cp.QueryRowContext(ctx, "SELECT nextval('rehearsal_writes_id_seq'), coalesce(max(id), 0) FROM rehearsal_writes").Scan(&next, &maxID); err != nil {
		t.Fatal(err)
	}
	if next <= maxID {
		t.Errorf("the copy's sequence gives %d, its rows go up to %d", next, maxID)
	}
	// The copy is a database an upgrade can run on: the engine reads it.
	st, err := schema.ReadState(ctx, cp, cp)
	if err != nil || st.Kind != schema.KindEngine || st.Version != 83 {
		t.Errorf("state of the copy: %+v %v", st, err)
	}
}

func pgConfig(t *testing.T, dbc config.Database) *config.Config {
	return configFor(t, "example.org", dbc)
}

func TestRun_PostgresTemplateWhenAlone(t *testing.T) {
	ctx := context.Background()
	dbc, d := engineDB(t, db.Postgres, 72, false, false)
	d.Close()
	rep, err := Run(ctx, Options{Config: pgConfig(t, dbc)})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Databases[0]
	if r.Copy.Method != "template" || r.Before.Schema != 72 || r.After.Schema != 83 || len(r.Deltas) == 0 || len(r.Updates) == 0 {
		t.Errorf("report %+v", r)
	}
	for _, c := range r.Checks {
		if c.Status == "blocker" {
			t.Errorf("check %+v", c)
		}
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

// TestRun_PostgresWithAConnectedHomeserver rehearses while a session is
// connected and writing: the copy comes from a snapshot, is verified, and
// the upgrade runs on it; the source is left as it was (but for the
// homeserver's own writes).
func TestRun_PostgresWithAConnectedHomeserver(t *testing.T) {
	ctx := context.Background()
	dbc, d := engineDB(t, db.Postgres, 72, true, false)
	stop := writer(t, d)
	defer stop()
	before := dbtest.Dump(t, d)
	stBefore, err := schema.ReadState(ctx, d, d)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, Options{Config: pgConfig(t, dbc), ConfigArg: "hs.yaml", VerifyCopy: true, Jobs: 2})
	var f *Failure
	if !errors.As(err, &f) || f.Step != "state_group_edges_unique_idx" || f.Fix != repair.RepairEdgesCommand {
		t.Fatalf("want the duplicated edges to fail the rehearsal, got %v", err)
	}
	r := rep.Databases[0]
	if r.Copy.Method != "snapshot" || !r.Copy.Verified || r.After.Schema != 83 {
		t.Errorf("report %+v", r)
	}
	if diff := catalog.Diff(before, dbtest.Dump(t, d)); len(diff) > 0 {
		t.Errorf("the source's schema changed:\n%v", diff)
	}
	if st, err := schema.ReadState(ctx, d, d); err != nil || st.Version != 72 || !slices.Equal(st.Applied, stBefore.Applied) || len(st.Updates) != len(stBefore.Updates) {
		t.Errorf("the source's bookkeeping changed: %+v %v", st, err)
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

func TestClean_Postgres(t *testing.T) {
	ctx := context.Background()
	dbc, d := engineDB(t, db.Postgres, 83, false, false)
	d.Close()
	stale := pgScratchName(dbc.DBName(), "20200101000000_1")
	busy := pgScratchName(dbc.DBName(), "20200101000000_2")
	kept := pgKept + pgBase(dbc.DBName()) + "_20200101000000_3"
	maint, err := maintenance(ctx, dbc, appName(busy))
	if err != nil {
		t.Fatal(err)
	}
	defer maint.Close(ctx)
	for _, n := range []string{stale, busy, kept} {
		dropScratch(t, dbc, n)
		if _, err := maint.Exec(ctx, "CREATE DATABASE "+qi(n)); err != nil {
			t.Fatal(err)
		}
	}
	// maint carries busy's application_name: a rehearsal is using it.
	other, err := maintenance(ctx, dbc, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	removed, inUse, err := cleanPostgres(ctx, other, dbc.DBName(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{stale}) || !slices.Equal(inUse, []string{busy}) {
		t.Errorf("removed %v, in use %v", removed, inUse)
	}
	removed, _, err = Clean(ctx, pgConfig(t, dbc), "")
	if err != nil || !slices.Equal(removed, []string{kept}) {
		t.Errorf("clean: removed %v, %v", removed, err)
	}
}

func TestRun_PostgresRefusesWhatTheSnapshotCannotCopy(t *testing.T) {
	ctx := context.Background()
	dbc, d := engineDB(t, db.Postgres, 82, false, false)
	if _, err := d.ExecContext(ctx, "CREATE TYPE mood AS ENUM ('ok', 'sad')"); err != nil {
		t.Fatal(err)
	}
	_, err := Run(ctx, Options{Config: pgConfig(t, dbc), ForceSnapshot: true})
	if !errors.Is(err, ErrNotCopyable) || fault.ClassOf(err) != fault.Backup {
		t.Fatalf("got %v", err)
	}
	if left := scratchLeft(t, dbc); len(left) > 0 {
		t.Fatalf("scratch left: %v", left)
	}
}
