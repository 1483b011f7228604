package rollback

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
	"hsops/schema/bookkeeping"
)

// Result is what a rollback did.
type Result struct {
	Plan *Plan
	// Backup is the copy made first (a file for SQLite), if any.
	Backup string
	// Version is the schema version after the rollback.
	Version  int
	Duration time.Duration
	// After are the pending background updates after the rollback.
	After []schema.PendingUpdate
}

// ErrBackup means the copy made before a rollback failed; nothing was
// changed.
var ErrBackup = fault.New(fault.Backup, "the backup before the rollback failed",
	"nothing was changed: free space next to the database for the copy, or add --no-backup to roll back without one")

// ErrMoved means the database changed between the plan and the
// transaction that was to run it; nothing was changed.
var ErrMoved = fault.New(fault.Version, "the database changed while the rollback was planned",
	"nothing was changed: another process changed the schema meanwhile; check it with `update_database status --database-config <config>`, then plan again")

// Apply rolls the database back to opts.Target under the schema lock: it
// plans (refusing data loss unless allowed), copies the database when asked,
// then runs every reverse and the bookkeeping in one transaction, so that a
// rollback that fails or is killed leaves the database as it was.
func (s *Set) Apply(ctx context.Context, d *db.DB, opts Options) (*Result, error) {
	lock, err := schema.AcquireLock(ctx, d, opts.Holder)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		return nil, err
	}
	plan, err := s.Plan(ctx, d, d.DB, st, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: plan, Version: st.Version, After: st.Updates}
	if !opts.AllowDataLoss {
		if err := plan.Refusal(); err != nil {
			return res, err
		}
	}
	if plan.Empty() {
		return res, nil
	}
	start := time.Now()
	if opts.BackupPath != "" {
		if err := BackupSQLite(ctx, d, opts.BackupPath); err != nil {
			return res, err
		}
		res.Backup = opts.BackupPath
	}
	err = schema.InTx(ctx, d, func(tx *sql.Tx) error {
		// The lock keeps other hsops tools out; check that nothing else
		// moved the schema since the plan, and count the losses again
		// where the reverses will destroy them.
		now, err := schema.ReadState(ctx, d, tx)
		if err != nil {
			return err
		}
		if now.Version != st.Version || len(now.Applied) != len(st.Applied) {
			return fmt.Errorf("%w: it was at schema %d, it is at %d", ErrMoved, st.Version, now.Version)
		}
		if !opts.AllowDataLoss {
			if err := plan.recountLosses(ctx, d, tx); err != nil {
				return err
			}
			if err := plan.Refusal(); err != nil {
				return err
			}
		}
		if err := s.execute(ctx, tx, d.Engine, plan, opts); err != nil {
			return err
		}
		res.After, err = schema.ReadUpdates(ctx, tx)
		return err
	})
	if err != nil {
		return res, err
	}
	res.Version = plan.Target
	res.Duration = time.Since(start)
	return res, nil
}

// ReverseError reports a reverse that failed; the whole rollback was
// undone.
type ReverseError struct {
	Version int
	Path    string
	Err     error
}

func (e *ReverseError) Error() string {
	return fmt.Sprintf("reverse of %d/%s: %v", e.Version, e.Path, e.Err)
}

func (e *ReverseError) Unwrap() error { return e.Err }

// Class is a failed delta's: the rollback was undone.
func (e *ReverseError) Class() fault.Class { return fault.Delta }

// Hint says what was left.
func (e *ReverseError) Hint() string {
	return "nothing was changed: the rollback ran in one transaction and was undone"
}

// execute runs a plan's reverses and bookkeeping in tx.
func (s *Set) execute(ctx context.Context, tx *sql.Tx, e db.Engine, p *Plan, opts Options) error {
	env := schema.Env{Engine: e, ServerName: opts.ServerName}
	for _, step := range p.Steps {
		for _, r := range step.Reverses {
			if err := r.run(ctx, tx, env); err != nil {
				return &ReverseError{Version: step.Version, Path: r.Path, Err: err}
			}
		}
	}
	book := bookkeeping.New(e)
	if err := book.ForgetDeltasAbove(ctx, tx, p.Target); err != nil {
		return err
	}
	if err := book.SetVersion(ctx, tx, p.Target, p.UpgradedAfter); err != nil {
		return err
	}
	if err := book.SetCompat(ctx, tx, p.CompatAfter); err != nil {
		return err
	}
	if p.State.Mark != nil {
		if err := book.LowerMark(ctx, tx, p.CreatedAfter); err != nil {
			return err
		}
		return book.RecordRollback(ctx, tx, p.From, p.Target, time.Now().UnixMilli())
	}
	return nil
}

// BackupSQLite writes a consistent copy of a SQLite database to path with
// VACUUM INTO. A partial copy (a full disk) is removed.
func BackupSQLite(ctx context.Context, d *db.DB, path string) error {
	if d.Engine != db.SQLite {
		return fmt.Errorf("%w: a file copy is only made of SQLite databases", ErrBackup)
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s already exists", ErrBackup, path)
	}
	if _, err := d.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("%w: copy to %s: %v", ErrBackup, path, err)
	}
	return nil
}
