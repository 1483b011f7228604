package porter

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"hsops/internal/db"
	"hsops/internal/rowsum"
)

func (p *porter) addResult(r TableResult) {
	r.Millis = r.Duration.Milliseconds()
	p.mu.Lock()
	p.res.Tables = append(p.res.Tables, r)
	p.mu.Unlock()
}

// withConn runs fn on a dedicated pgx connection of the target, with the
// port's session settings.
func (p *porter) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	if p.opts.syncCommit {
		return session(ctx, p.tgt, func(pc *pgx.Conn) error {
			if _, err := pc.Exec(ctx, "SET synchronous_commit = on"); err != nil {
				return err
			}
			return fn(pc)
		})
	}
	return session(ctx, p.tgt, fn)
}

// session runs fn on a dedicated pgx connection with the settings of a
// bulk load: synchronous_commit off (each batch commits its own
// bookkeeping, so a crash can only lose batches that will be copied again)
// and no statement timeout (an index build may take long).
func session(ctx context.Context, d *db.DB, fn func(*pgx.Conn) error) error {
	conn, err := d.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		if _, err := pc.Exec(ctx, "SET synchronous_commit = off; SET statement_timeout = 0"); err != nil {
			return err
		}
		return fn(pc)
	})
}

func (p *porter) copyTable(ctx context.Context, t *Table) error {
	switch t.Strategy {
	case Ignored, DirectoryPos:
		p.addResult(TableResult{Name: t.Name, Strategy: t.Strategy})
		return nil
	case Search:
		return p.copySearch(ctx, t)
	case Recopy:
		if t.keep {
			return p.keepTable(t)
		}
		return p.copyRecopy(ctx, t)
	}
	return p.copyAppendOnly(ctx, t)
}

// columnList is the source's column list for SELECT.
func columnList(t *Table) string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		src := c.Source
		if src == "" {
			src = c.Name
		}
		names[i] = db.QuoteIdent(src)
	}
	return strings.Join(names, ", ")
}

// batch is a slice of rows read from SQLite, converted, with the
// bookkeeping it commits.
type batch struct {
	rows      [][]any
	forward   int64
	backward  int64
	lastRowID int64
	lastHash  string
	bytes     int64
	fixes     fixes
}

// rowHash fingerprints a converted row.
func rowHash(row []any, t *Table) string {
	var buf []byte
	for i, v := range row {
		buf = rowsum.Field(buf, v, renderKind(t.Columns[i].kind))
	}
	h := fnv.New64a()
	_, _ = h.Write(buf)
	return strconv.FormatUint(h.Sum64(), 16)
}

func renderKind(k kind) rowsum.Kind {
	switch k {
	case kBool:
		return rowsum.Boolean
	case kBytes:
		return rowsum.Bytes
	case kInt:
		return rowsum.Integer
	case kFloat:
		return rowsum.Float
	}
	return rowsum.Text
}

func valueSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case []byte:
		return int64(len(x))
	case nil:
		return 0
	}
	return 8
}

// readRows reads rows "rowid, cols..." and converts them.
func (p *porter) readRows(ctx context.Context, t *Table, query string, args ...any) (rows [][]any, rowids []int64, f fixes, bytes int64, err error) {
	rs, err := p.src.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, f, 0, fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rs.Close()
	n := len(t.Columns)
	raw := make([]any, n+1)
	ptrs := make([]any, n+1)
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return nil, nil, f, 0, fmt.Errorf("read %s: %w", t.Name, err)
		}
		rowid, _ := raw[0].(int64)
		row := make([]any, n)
		for i, c := range t.Columns {
			v, ok := convert(raw[i+1], c.kind, &f)
			if !ok {
				return nil, nil, f, 0, &ConvertError{Table: t.Name, Column: c.Name, TargetType: c.TargetType, RowID: rowid, Value: describe(raw[i+1])}
			}
			row[i] = v
			bytes += valueSize(v)
		}
		rows = append(rows, row)
		rowids = append(rowids, rowid)
	}
	return rows, rowids, f, bytes, rs.Err()
}

// copyAppendOnly copies new rows by rowid, forward from forward_rowid and
// backward from backward_rowid, one batch per transaction with its
// bookkeeping. Reading the next batch overlaps writing the current one.
func (p *porter) copyAppendOnly(ctx context.Context, t *Table) error {
	t0 := time.Now()
	res := TableResult{Name: t.Name, Strategy: t.Strategy, Already: t.already}
	total := res.Already + t.remaining
	p.emit(Event{Type: "table", Table: t.Name, Done: res.Already, Total: total})
	if t.remaining > 0 {
		batches := make(chan batch, 1)
		readErr := make(chan error, 1)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// The reader reports on readErr on every way out (a cancelled read
		// too), so the wait for it below cannot hang.
		go func() { readErr <- p.readBatches(rctx, t, batches) }()
		err := p.withConn(ctx, func(pc *pgx.Conn) error {
			for b := range batches {
				if err := commitBatch(ctx, pc, t, b); err != nil {
					return err
				}
				n := int64(len(b.rows))
				res.Copied += n
				res.Bytes += b.bytes
				res.NUL += b.fixes.NUL
				res.BadUTF8 += b.fixes.BadUTF8
				p.emit(Event{Type: "batch", Table: t.Name, Rows: n, Bytes: b.bytes, Done: res.Already + res.Copied, Total: total})
			}
			return nil
		})
		cancel()
		if rerr := <-readErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		p.fixesWarning(t.Name, res)
	}
	res.Duration = time.Since(t0)
	p.addResult(res)
	p.emit(Event{Type: "table_done", Table: t.Name, Done: res.Already + res.Copied, Total: total})
	return nil
}

// readBatches reads an append-only table's new rows into batches, forward
// from t.fwd and backward from t.bwd, until both directions are exhausted
// (then it closes batches) or ctx ends.
func (p *porter) readBatches(ctx context.Context, t *Table, batches chan<- batch) error {
	defer close(batches)
	cols := columnList(t)
	fq := "SELECT rowid, " + cols + " FROM " + db.QuoteIdent(t.Name) + " WHERE rowid >= ? ORDER BY rowid LIMIT ?"
	bq := "SELECT rowid, " + cols + " FROM " + db.QuoteIdent(t.Name) + " WHERE rowid <= ? ORDER BY rowid DESC LIMIT ?"
	fwd, bwd := t.fwd, t.bwd
	forwardOn, backwardOn := true, true
	for forwardOn || backwardOn {
		var b batch
		if forwardOn {
			ids, err := p.readInto(ctx, t, fq, fwd, &b)
			if err != nil {
				return err
			}
			if forwardOn = len(ids) > 0; forwardOn {
				fwd = ids[len(ids)-1] + 1
				b.lastRowID = ids[len(ids)-1]
				b.lastHash = rowHash(b.rows[len(b.rows)-1], t)
			}
		}
		if backwardOn {
			ids, err := p.readInto(ctx, t, bq, bwd, &b)
			if err != nil {
				return err
			}
			if backwardOn = len(ids) > 0; backwardOn {
				bwd = ids[len(ids)-1] - 1
			}
		}
		if len(b.rows) == 0 {
			return nil
		}
		b.forward, b.backward = fwd, bwd
		select {
		case batches <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readInto reads up to a batch of rows from query (from the rowid from)
// and adds them to b, returning their rowids.
func (p *porter) readInto(ctx context.Context, t *Table, query string, from int64, b *batch) ([]int64, error) {
	rows, ids, f, n, err := p.readRows(ctx, t, query, from, p.opts.BatchSize)
	if err != nil {
		return nil, err
	}
	b.rows = append(b.rows, rows...)
	b.fixes.NUL += f.NUL
	b.fixes.BadUTF8 += f.BadUTF8
	b.bytes += n
	return ids, nil
}

// commitBatch writes one batch and its bookkeeping (the rowids reached, the
// fingerprint of the last forward row) in one transaction.
func commitBatch(ctx context.Context, pc *pgx.Conn, t *Table, b batch) error {
	tx, err := pc.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := copyIn(ctx, pc, t, false, pgx.CopyFromRows(b.rows)); err != nil {
		return fmt.Errorf("copy %s: %w", t.Name, err)
	}
	if _, err := tx.Exec(ctx, "UPDATE port_from_sqlite3 SET forward_rowid = $1, backward_rowid = $2 WHERE table_name = $3", b.forward, b.backward, t.Name); err != nil {
		return err
	}
	if b.lastHash != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO hsops_port_tables (table_name, last_rowid, last_row_hash) VALUES ($1, $2, $3)
			ON CONFLICT (table_name) DO UPDATE SET last_rowid = excluded.last_rowid, last_row_hash = excluded.last_row_hash`, t.Name, b.lastRowID, b.lastHash); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (p *porter) fixesWarning(table string, r TableResult) {
	if r.NUL > 0 {
		p.emit(Event{Type: "warning", Table: table, Message: fmt.Sprintf("%d NUL characters replaced by U+FFFD (PostgreSQL text cannot hold them); the rows were kept", r.NUL)})
	}
	if r.BadUTF8 > 0 {
		p.emit(Event{Type: "warning", Table: table, Message: fmt.Sprintf("%d invalid UTF-8 sequences replaced by U+FFFD; the rows were kept", r.BadUTF8)})
	}
}

// checkFingerprint refuses a source whose rowids moved since the last run:
// the row the last batch ended on must still have the same content.
func (p *porter) checkFingerprint(ctx context.Context, t *Table, fwd int64) error {
	if fwd <= 1 {
		return nil
	}
	var rowid int64
	var want string
	err := p.tgt.QueryRowContext(ctx, "SELECT last_rowid, last_row_hash FROM hsops_port_tables WHERE table_name = $1", t.Name).Scan(&rowid, &want)
	if err == sql.ErrNoRows {
		return nil // a port begun by Synapse's porter
	}
	if err != nil {
		return err
	}
	rows, _, _, _, err := p.readRows(ctx, t, "SELECT rowid, "+columnList(t)+" FROM "+db.QuoteIdent(t.Name)+" WHERE rowid = ?", rowid)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		p.emit(Event{Type: "warning", Table: t.Name, Message: fmt.Sprintf("row %d, the last one copied last time, is gone from the source (purged?)", rowid)})
		return nil
	}
	if got := rowHash(rows[0], t); got != want {
		return sourceErr("the rows of %s moved since the last run (row %d holds different data): the database was vacuumed or rebuilt, "+
			"so the rows already ported can no longer be told from new ones; port into an empty database instead", t.Name, rowid)
	}
	return nil
}

// rowSource streams SQLite rows into COPY, converting on the way.
type rowSource struct {
	p     *porter
	t     *Table
	rows  *sql.Rows
	raw   []any
	ptrs  []any
	cur   []any
	err   error
	n     int64
	bytes int64
	maxID int64
	fixes fixes
	total int64
	last  time.Time
}

func (s *rowSource) Next() bool {
	if s.err != nil || !s.rows.Next() {
		return false
	}
	if err := s.rows.Scan(s.ptrs...); err != nil {
		s.err = err
		return false
	}
	rowid, _ := s.raw[0].(int64)
	if rowid > s.maxID {
		s.maxID = rowid
	}
	s.cur = make([]any, len(s.t.Columns))
	for i, c := range s.t.Columns {
		v, ok := convert(s.raw[i+1], c.kind, &s.fixes)
		if !ok {
			s.err = &ConvertError{Table: s.t.Name, Column: c.Name, TargetType: c.TargetType, RowID: rowid, Value: describe(s.raw[i+1])}
			return false
		}
		s.cur[i] = v
		s.bytes += valueSize(v)
	}
	s.n++
	if s.n%20000 == 0 && time.Since(s.last) > 200*time.Millisecond {
		s.last = time.Now()
		s.p.emit(Event{Type: "batch", Table: s.t.Name, Rows: 20000, Done: s.n, Total: s.total})
	}
	return true
}

func (s *rowSource) Values() ([]any, error) { return s.cur, nil }
func (s *rowSource) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.rows.Err()
}

// copyRecopy copies a whole table in one transaction and one COPY stream
// (it was emptied when the run began, with the other re-copied tables).
func (p *porter) copyRecopy(ctx context.Context, t *Table) error {
	t0 := time.Now()
	res := TableResult{Name: t.Name, Strategy: t.Strategy}
	total := t.remaining
	p.emit(Event{Type: "table", Table: t.Name, Total: total})
	if total > 0 {
		rows, err := p.src.QueryContext(ctx, "SELECT rowid, "+columnList(t)+" FROM "+db.QuoteIdent(t.Name)+" ORDER BY rowid")
		if err != nil {
			return fmt.Errorf("read %s: %w", t.Name, err)
		}
		defer rows.Close()
		src := &rowSource{p: p, t: t, rows: rows, raw: make([]any, len(t.Columns)+1), total: total}
		src.ptrs = make([]any, len(src.raw))
		for i := range src.raw {
			src.ptrs[i] = &src.raw[i]
		}
		err = p.withConn(ctx, func(pc *pgx.Conn) error {
			tx, err := pc.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			// Emptied again in this transaction (it is empty already), so
			// that its rows are written frozen: nothing will have to visit
			// them again to mark them visible.
			if t.freeze {
				if _, err := tx.Exec(ctx, "TRUNCATE "+db.QuoteIdent(t.Name)); err != nil {
					return fmt.Errorf("empty %s: %w", t.Name, err)
				}
			}
			if _, err := copyIn(ctx, pc, t, t.freeze, src); err != nil {
				if src.err != nil {
					return src.err
				}
				return fmt.Errorf("copy %s: %w", t.Name, err)
			}
			if _, err := tx.Exec(ctx, "UPDATE port_from_sqlite3 SET forward_rowid = $1 WHERE table_name = $2", src.maxID+1, t.Name); err != nil {
				return err
			}
			return tx.Commit(ctx)
		})
		if err != nil {
			return err
		}
		res.Copied, res.Bytes, res.NUL, res.BadUTF8 = src.n, src.bytes, src.fixes.NUL, src.fixes.BadUTF8
	}
	p.fixesWarning(t.Name, res)
	res.Duration = time.Since(t0)
	p.addResult(res)
	p.emit(Event{Type: "table_done", Table: t.Name, Done: res.Copied, Total: total})
	return nil
}
