package schema

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema/bookkeeping"
)

// Result is what Apply did.
type Result struct {
	Plan *Plan
	// Applied are the deltas run, "<V>/<file>".
	Applied []string
	// Version is the schema version after the run.
	Version  int
	Duration time.Duration
}

// Apply brings the database to opts.Target (default: the newest version)
// under the schema lock: it reads the state, runs the preflight, plans,
// validates and then runs the plan, one transaction per version.
func (s *Set) Apply(ctx context.Context, d *db.DB, opts Options) (*Result, error) {
	if !opts.LockHeld {
		lock, err := AcquireLock(ctx, d, opts.Holder)
		if err != nil {
			return nil, err
		}
		defer lock.Release()
	}
	st, err := ReadState(ctx, d, d.DB)
	if err != nil {
		return nil, err
	}
	if err := Preflight(ctx, d, st, opts.AllowUnsafeLocale); err != nil {
		return nil, err
	}
	plan, err := s.Plan(st, d.Engine, opts)
	if err != nil {
		return nil, err
	}
	return s.Execute(ctx, d, plan, opts)
}

// Execute runs a plan. The caller holds the schema lock.
func (s *Set) Execute(ctx context.Context, d *db.DB, plan *Plan, opts Options) (*Result, error) {
	start := time.Now()
	x := &executor{s: s, d: d, plan: plan, opts: opts, book: bookkeeping.New(d.Engine),
		env:    Env{Engine: d.Engine, New: plan.Create, ServerName: opts.ServerName},
		compat: plan.State.Compat, hasCompat: plan.State.HasCompat}
	res := &Result{Plan: plan, Version: plan.State.Version}
	if plan.Create {
		if err := x.createFromSnapshot(ctx); err != nil {
			return nil, fault.InterruptCtx(ctx, err, "nothing was created (the snapshot's transaction was rolled back)")
		}
		res.Version = plan.Snapshot
	}
	for done, step := range plan.Steps {
		x.emit(Event{Type: "version", Version: step.Version})
		applied, err := x.applyStep(ctx, step)
		if err != nil {
			res.Duration = time.Since(start)
			return res, fault.InterruptCtx(ctx, err, committedBefore(res, done, step.Version))
		}
		res.Applied = append(res.Applied, applied...)
		res.Version = step.Version
	}
	res.Duration = time.Since(start)
	return res, nil
}

// executor runs one plan; compat is the database's compat version as the
// versions committed so far left it.
type executor struct {
	s         *Set
	d         *db.DB
	plan      *Plan
	opts      Options
	book      bookkeeping.Store
	env       Env
	compat    int
	hasCompat bool
}

func (x *executor) emit(ev Event) {
	if x.opts.Progress != nil {
		x.opts.Progress(ev)
	}
}

// createFromSnapshot creates a new database from the plan's full-schema
// snapshot, its bookkeeping and the engine's mark, in one transaction.
func (x *executor) createFromSnapshot(ctx context.Context) error {
	t0 := time.Now()
	plan := x.plan
	err := InTx(ctx, x.d, func(tx *sql.Tx) error {
		if err := x.s.execBookkeeping(ctx, tx); err != nil {
			return err
		}
		for _, f := range plan.SnapshotFiles {
			if _, err := tx.ExecContext(ctx, f.SQL); err != nil {
				return &DeltaError{Version: plan.Snapshot, File: f.Path, Err: err}
			}
		}
		if err := x.book.SetVersion(ctx, tx, plan.Snapshot, false); err != nil {
			return err
		}
		if err := x.book.SetCompat(ctx, tx, x.s.CompatFor(plan.Snapshot)); err != nil {
			return err
		}
		return x.book.SetMark(ctx, tx, Mark{Engine: x.s.Name, CreatedVersion: plan.Snapshot, CreatedTS: time.Now().UnixMilli()})
	})
	if err != nil {
		return err
	}
	x.compat, x.hasCompat = x.s.CompatFor(plan.Snapshot), true
	x.emit(Event{Type: "snapshot", Version: plan.Snapshot, Millis: time.Since(t0).Milliseconds()})
	return nil
}

// applyStep applies one version's deltas and its bookkeeping in one
// transaction, and returns the deltas applied.
func (x *executor) applyStep(ctx context.Context, step Step) ([]string, error) {
	var applied []string
	err := InTx(ctx, x.d, func(tx *sql.Tx) error {
		applied = applied[:0]
		if !x.plan.Create {
			if err := x.s.execBookkeeping(ctx, tx); err != nil {
				return err
			}
		}
		if !x.hasCompat || step.Compat != x.compat {
			if err := x.book.SetCompat(ctx, tx, step.Compat); err != nil {
				return err
			}
		}
		if err := x.book.SetVersion(ctx, tx, step.Version, true); err != nil {
			return err
		}
		for _, dl := range step.Deltas {
			if err := x.applyDelta(ctx, tx, dl); err != nil {
				return &DeltaError{Version: dl.Version, File: dl.Name, Err: err}
			}
			applied = append(applied, dl.Key())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	x.compat, x.hasCompat = step.Compat, true
	return applied, nil
}

// applyDelta runs one delta and records it, timed, with the rows it
// changed when the options ask for them.
func (x *executor) applyDelta(ctx context.Context, tx *sql.Tx, dl Delta) error {
	t0 := time.Now()
	var c0 int64
	if x.opts.CountRows {
		c0 = RowChanges(ctx, tx, x.d.Engine)
	}
	if err := runDelta(ctx, tx, dl, x.env); err != nil {
		return err
	}
	if err := x.book.RecordDelta(ctx, tx, dl.Version, dl.Key()); err != nil {
		return err
	}
	ev := Event{Type: "delta", Version: dl.Version, File: dl.Name, Millis: time.Since(t0).Milliseconds()}
	if x.opts.CountRows {
		ev.Rows = -1
		if c1 := RowChanges(ctx, tx, x.d.Engine); c0 >= 0 && c1 >= 0 {
			ev.Rows = c1 - c0
		}
	}
	x.emit(ev)
	return nil
}

// committedBefore says what a run interrupted while applying version at
// had committed: done versions (and the snapshot of a new database).
func committedBefore(res *Result, done, at int) string {
	switch {
	case res.Plan.Create && done == 0:
		return fmt.Sprintf("the database was created at schema %d (schema %d was rolled back)", res.Plan.Snapshot, at)
	case done == 0:
		return fmt.Sprintf("nothing was changed: the database is at schema %d (schema %d was rolled back)", res.Version, at)
	case done == 1:
		return fmt.Sprintf("the database is at schema %d (1 version committed; schema %d was rolled back)", res.Version, at)
	}
	return fmt.Sprintf("the database is at schema %d (%d versions committed; schema %d was rolled back)", res.Version, done, at)
}

func runDelta(ctx context.Context, tx *sql.Tx, d Delta, env Env) error {
	if d.Kind == DeltaSQL {
		_, err := tx.ExecContext(ctx, d.SQL)
		return err
	}
	if d.Go.Create != nil {
		if err := d.Go.Create(ctx, tx, env); err != nil {
			return err
		}
	}
	if !env.New && d.Go.Upgrade != nil {
		return d.Go.Upgrade(ctx, tx, env)
	}
	return nil
}

// RowChanges counts the rows inserted, updated and deleted so far: by the
// connection on SQLite (total_changes), by the transaction on PostgreSQL
// (pg_stat_xact_user_tables). The difference around a statement is what it
// touched; -1 when it cannot be read.
func RowChanges(ctx context.Context, q db.Querier, e db.Engine) int64 {
	query := "SELECT total_changes()"
	if e == db.Postgres {
		query = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_xact_user_tables"
	}
	var n int64
	if err := q.QueryRowContext(ctx, query).Scan(&n); err != nil {
		return -1
	}
	return n
}

// execBookkeeping creates the bookkeeping tables if they are missing.
func (s *Set) execBookkeeping(ctx context.Context, tx *sql.Tx) error {
	data, err := fs.ReadFile(s.FS, "common/schema_version.sql")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	if _, err := tx.ExecContext(ctx, string(data)); err != nil {
		return fmt.Errorf("create bookkeeping tables: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction, committing on success. On SQLite the
// transaction starts with BEGIN IMMEDIATE (see package db).
func InTx(ctx context.Context, d *db.DB, fn func(tx *sql.Tx) error) error {
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
