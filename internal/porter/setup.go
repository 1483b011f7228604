package porter

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"hsops/internal/db"
	"hsops/schema"
	"hsops/schema/bookkeeping"
	"hsops/schema/engine"
)

// bookkeepingSQL creates the port's bookkeeping: Synapse's
// port_from_sqlite3, plus the source identity and the per-table
// fingerprints of the last rows copied.
const bookkeepingSQL = `
CREATE TABLE IF NOT EXISTS port_from_sqlite3 (
    table_name varchar(100) NOT NULL UNIQUE,
    forward_rowid bigint NOT NULL,
    backward_rowid bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS hsops_port (
    Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    source_identity TEXT NOT NULL,
    source_path TEXT NOT NULL,
    started_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    completed_ts BIGINT,
    CHECK (Lock='X')
);
CREATE TABLE IF NOT EXISTS hsops_port_tables (
    table_name TEXT NOT NULL UNIQUE,
    last_rowid BIGINT NOT NULL,
    last_row_hash TEXT NOT NULL
);`

// checkAndCount reads every page of the source (quick_check) and counts
// what the run will copy, at once on two SQLite connections; then, on the
// same goroutine as the counting, prepare (if not nil) begins preparing the
// target. The first error wins: the caller rolls back what prepare began.
func (p *porter) checkAndCount(ctx context.Context, prepare func() error) error {
	p.state("Checking the SQLite file and counting its rows")
	var wg sync.WaitGroup
	var checkErr, countErr error
	if p.opts.PagesChecked {
		// The caller checked every page a short while ago (final.go).
		p.res.PageCheck = "as read"
	} else {
		p.res.PageCheck = "quick_check"
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			checkErr = p.checkIntegrity(ctx)
			p.step("integrity check", time.Since(t0))
		}()
	}
	t0 := time.Now()
	countErr = p.measure(ctx)
	p.step("count", time.Since(t0))
	if countErr == nil && prepare != nil {
		countErr = prepare()
	}
	wg.Wait()
	// A corrupt file explains a failed count: its error comes first.
	if checkErr != nil {
		return checkErr
	}
	return countErr
}

// checkAndPrepare runs the source's checks and counting, and prepares the
// target meanwhile in one transaction that commits only when the source
// passed: a refused source leaves the target exactly as it was. A target
// whose schema must be created, or whose background updates must run
// first, is prepared after the checks.
func (p *porter) checkAndPrepare(ctx context.Context) error {
	overlap := p.tgtSt.Kind != schema.KindEmpty && (len(p.tgtSt.Updates) == 0 || p.mode != "engine")
	var tx *sql.Tx
	err := p.checkAndCount(ctx, func() error {
		if !overlap {
			return nil
		}
		t0 := time.Now()
		var err error
		tx, err = p.prepareTarget(ctx)
		p.step("prepare target", time.Since(t0))
		return err
	})
	if err != nil {
		if tx != nil {
			_ = tx.Rollback()
		}
		return err
	}
	if tx == nil {
		if err := p.setupSchema(ctx); err != nil {
			return err
		}
		if tx, err = p.prepareTarget(ctx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("prepare the target: %w", err)
	}
	if n := len(p.deferred); n > 0 {
		p.note("%d indexes and constraints are dropped for the copy and rebuilt after it (recorded in hsops_port_deferred until they are back)", n)
	}
	return nil
}

// setupSchema creates the engine's schema in an empty target (at the
// source's version) and runs the target's pending background updates
// (engine mode; Synapse runs its own at first start).
func (p *porter) setupSchema(ctx context.Context) error {
	if p.mode == "engine" && p.tgtSt.Kind == schema.KindEmpty {
		p.state(fmt.Sprintf("Preparing the PostgreSQL schema at version %d", p.srcSt.Version))
		_, err := engine.Schema().Apply(ctx, p.tgt, schema.Options{Target: p.srcSt.Version, ServerName: p.opts.ServerName,
			AllowUnsafeLocale: p.opts.Target.AllowUnsafeLocale, Holder: "port_db", LockHeld: true})
		if err != nil {
			return err
		}
		p.res.CreatedSchema = true
		if p.tgtSt, err = schema.ReadState(ctx, p.tgt, p.tgt.DB); err != nil {
			return err
		}
		// The work set again, with the target's column types; the counts
		// stay.
		counted := p.tables
		if err := p.buildWorkSet(ctx); err != nil {
			return err
		}
		keepCounts(p.tables, counted)
	}
	if n := len(p.tgtSt.Updates); n > 0 {
		if p.mode == "engine" {
			p.state("Running background updates on PostgreSQL")
			r := &schema.Runner{DB: p.tgt, Registry: engine.Schema().Updates, Env: schema.Env{Engine: db.Postgres, ServerName: p.opts.ServerName}}
			if err := r.RunAll(ctx); err != nil {
				return err
			}
		} else {
			p.note("%d background updates are queued in the target; Synapse runs them when it first starts on PostgreSQL", n)
		}
	}
	return nil
}

// keepCounts copies what measure found from one work set to another.
func keepCounts(to, from []*Table) {
	byName := map[string]*Table{}
	for _, t := range from {
		byName[t.Name] = t
	}
	for _, t := range to {
		if f := byName[t.Name]; f != nil {
			t.fwd, t.bwd, t.already, t.remaining = f.fwd, f.bwd, f.already, f.remaining
			t.keep, t.kept = f.keep, f.kept
		}
	}
}

// prepareTarget begins the transaction that makes the target ready for the
// copy: the bookkeeping (created, the source recorded), the tables copied
// again on each run emptied, and the indexes and foreign keys of the tables
// loaded from empty dropped and recorded. The caller commits it.
func (p *porter) prepareTarget(ctx context.Context) (*sql.Tx, error) {
	if p.mode == "synapse" && len(p.tgtSt.Updates) > 0 {
		p.note("%d background updates are queued in the target; Synapse runs them when it first starts on PostgreSQL", len(p.tgtSt.Updates))
	}
	tx, err := p.tgt.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := p.prepareIn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return tx, nil
}

func (p *porter) prepareIn(ctx context.Context, tx *sql.Tx) error {
	// A very old porter kept a single rowid column: convert it (an error
	// means there is nothing to convert).
	if _, err := tx.ExecContext(ctx, "SAVEPOINT legacy"); err != nil {
		return err
	}
	_, err1 := tx.ExecContext(ctx, "ALTER TABLE IF EXISTS port_from_sqlite3 RENAME rowid TO forward_rowid")
	var err2 error
	if err1 == nil {
		_, err2 = tx.ExecContext(ctx, "ALTER TABLE IF EXISTS port_from_sqlite3 ADD backward_rowid bigint NOT NULL DEFAULT 0")
	}
	undo := "RELEASE SAVEPOINT legacy"
	if err1 != nil || err2 != nil {
		undo = "ROLLBACK TO SAVEPOINT legacy"
	}
	if _, err := tx.ExecContext(ctx, undo); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, bookkeepingSQL+deferredSQL); err != nil {
		return fmt.Errorf("create port tables: %w", err)
	}
	now := time.Now().UnixMilli()
	id := identity(ctx, p.src, p.srcSt)
	if _, err := tx.ExecContext(ctx, `INSERT INTO hsops_port (source_identity, source_path, started_ts, updated_ts) VALUES ($1, $2, $3, $3)
		ON CONFLICT (Lock) DO UPDATE SET source_path = excluded.source_path, updated_ts = excluded.updated_ts, completed_ts = NULL`, id, p.opts.SQLitePath, now); err != nil {
		return fmt.Errorf("record the source: %w", err)
	}
	if err := p.deferIndexes(ctx, tx); err != nil {
		return err
	}
	return p.resetTables(ctx, tx)
}

// deferIndexes drops, and records, the indexes and foreign keys of the
// tables this run loads from empty (re-copied tables, and append-only ones
// that hold nothing yet), when they receive enough rows for it to pay; and
// reads back everything recorded, this run's and what earlier runs left.
func (p *porter) deferIndexes(ctx context.Context, tx *sql.Tx) error {
	recorded, err := readDeferred(ctx, tx)
	if err != nil {
		return err
	}
	empty, bulk := map[string]bool{}, map[string]bool{}
	for _, t := range p.tables {
		switch t.Strategy {
		case Recopy:
			empty[t.Name] = !t.keep
		case AppendOnly, Search:
			empty[t.Name] = t.already == 0
		case Ignored, DirectoryPos:
			// Emptied, and not copied.
			empty[t.Name] = true
		}
		bulk[t.Name] = empty[t.Name] && t.remaining >= p.opts.deferMin
	}
	cat, err := readCatalogObjects(ctx, tx)
	if err != nil {
		return err
	}
	drop := chooseDeferred(cat, empty, bulk)
	// A foreign key a killed run put back NOT VALID is among them if its
	// table is loaded from empty again: its record keeps the original
	// definition.
	if err := dropDeferred(ctx, tx, drop, true); err != nil {
		return err
	}
	// A record of an object that is there (and not dropped again) is
	// stale: the object is back.
	for _, r := range recorded {
		if r.State != stateDropped || isDeferred(drop, r.Table, r.Name) || !cat.has(r.Table, r.Name) {
			continue
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM hsops_port_deferred WHERE table_name = $1 AND name = $2", r.Table, r.Name); err != nil {
			return err
		}
	}
	if p.deferred, err = readDeferred(ctx, tx); err != nil {
		return err
	}
	// The foreign keys dropped (by this run or an earlier one) order the
	// copy as those in the catalog do.
	for _, o := range p.deferred {
		if o.Kind != kindForeignKey || o.RefTable == o.Table {
			continue
		}
		for _, t := range p.tables {
			if t.Name == o.Table && !slices.Contains(t.Refs, o.RefTable) {
				t.Refs = append(t.Refs, o.RefTable)
			}
		}
	}
	// A re-copied table can be emptied again in its copy's transaction, so
	// that COPY writes its rows frozen, unless a foreign key of another
	// table still points at it (TRUNCATE would refuse).
	for _, t := range p.tables {
		t.freeze = t.Strategy == Recopy && !t.keep && !p.opts.noFreeze
	}
	for _, k := range cat.fkeys {
		if k.Table != k.RefTable && !isDeferred(drop, k.Table, k.Name) {
			for _, t := range p.tables {
				if t.Name == k.RefTable {
					t.freeze = false
				}
			}
		}
	}
	return nil
}

func isDeferred(objs []deferredObject, table, name string) bool {
	for _, o := range objs {
		if o.Table == table && o.Name == name {
			return true
		}
	}
	return false
}

// resetTables empties, in one TRUNCATE, every table that is copied again on
// each run (and the ignored ones), resets their bookkeeping, and registers
// the append-only tables not seen before. There is no CASCADE: an
// append-only table referencing an emptied one would stop the port with an
// error rather than lose its rows.
func (p *porter) resetTables(ctx context.Context, tx *sql.Tx) error {
	var truncate []string
	for _, t := range p.tables {
		if t.keep {
			// The same on both sides (KeepUnchanged): left as it is.
			continue
		}
		switch t.Strategy {
		case Recopy, Ignored, DirectoryPos:
			truncate = append(truncate, db.QuoteIdent(t.Name))
			if _, err := tx.ExecContext(ctx, "DELETE FROM port_from_sqlite3 WHERE table_name = $1", t.Name); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO port_from_sqlite3 (table_name, forward_rowid, backward_rowid) VALUES ($1, 1, 0)", t.Name); err != nil {
				return err
			}
		case AppendOnly, Search:
			if _, err := tx.ExecContext(ctx, `INSERT INTO port_from_sqlite3 (table_name, forward_rowid, backward_rowid)
				SELECT $1::varchar, 1, 0 WHERE NOT EXISTS (SELECT 1 FROM port_from_sqlite3 WHERE table_name = $1::varchar)`, t.Name); err != nil {
				return err
			}
		}
	}
	if len(truncate) > 0 {
		if _, err := tx.ExecContext(ctx, "TRUNCATE "+strings.Join(truncate, ", ")); err != nil {
			return fmt.Errorf("empty the tables copied again on each run: %w", err)
		}
	}
	for _, t := range p.tables {
		if t.Strategy != DirectoryPos {
			continue
		}
		var n int
		if err := p.src.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(t.Name)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			if _, err := tx.ExecContext(ctx, "INSERT INTO user_directory_stream_pos (stream_id) VALUES (NULL)"); err != nil {
				return err
			}
			if p.mode == "synapse" {
				if err := queueDirectoryRebuild(ctx, tx); err != nil {
					return err
				}
				p.note("the user directory is not ported; its rebuild (regenerate_directory) is queued for Synapse's first start")
			}
		}
	}
	return nil
}

// queueDirectoryRebuild queues Synapse's regenerate_directory updates.
func queueDirectoryRebuild(ctx context.Context, tx *sql.Tx) error {
	steps := []string{"populate_user_directory_createtables", "populate_user_directory_process_rooms",
		"populate_user_directory_process_users", "populate_user_directory_cleanup"}
	book := bookkeeping.New(db.Postgres)
	prev := ""
	for _, s := range steps {
		if _, err := book.Enqueue(ctx, tx, schema.PendingUpdate{Name: s, Progress: "{}", DependsOn: prev}); err != nil {
			return err
		}
		prev = s
	}
	return nil
}
