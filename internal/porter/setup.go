package porter

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
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

// setupTarget makes the target ready: schema (engine mode), its background
// updates, the bookkeeping, sequences, and the emptying of the tables that
// are copied again on each run.
func (p *porter) setupTarget(ctx context.Context) error {
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
		if err := p.buildWorkSet(ctx); err != nil {
			return err
		}
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

	p.state("Creating port tables")
	// A very old porter kept a single rowid column: convert it (errors mean
	// there is nothing to convert).
	if tx, err := p.tgt.BeginTx(ctx, nil); err == nil {
		_, err1 := tx.ExecContext(ctx, "ALTER TABLE IF EXISTS port_from_sqlite3 RENAME rowid TO forward_rowid")
		_, err2 := tx.ExecContext(ctx, "ALTER TABLE IF EXISTS port_from_sqlite3 ADD backward_rowid bigint NOT NULL DEFAULT 0")
		if err1 == nil && err2 == nil {
			_ = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if _, err := p.tgt.ExecContext(ctx, bookkeepingSQL); err != nil {
		return fmt.Errorf("create port tables: %w", err)
	}
	now := time.Now().UnixMilli()
	id := identity(ctx, p.src, p.srcSt)
	if _, err := p.tgt.ExecContext(ctx, `INSERT INTO hsops_port (source_identity, source_path, started_ts, updated_ts) VALUES ($1, $2, $3, $3)
		ON CONFLICT (Lock) DO UPDATE SET source_path = excluded.source_path, updated_ts = excluded.updated_ts, completed_ts = NULL`, id, p.opts.SQLitePath, now); err != nil {
		return fmt.Errorf("record the source: %w", err)
	}

	p.state("Setting up sequence generators")
	if err := p.setSequences(ctx); err != nil {
		return err
	}

	p.state("Checking on port progress")
	return p.resetTables(ctx)
}

// resetTables empties, in one transaction and one TRUNCATE, every table
// that is copied again on each run (and the ignored ones), resets their
// bookkeeping, and registers the append-only tables not seen before. There
// is no CASCADE: an append-only table referencing an emptied one would stop
// the port with an error rather than lose its rows.
func (p *porter) resetTables(ctx context.Context) error {
	tx, err := p.tgt.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var truncate []string
	for _, t := range p.tables {
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
	return tx.Commit()
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
