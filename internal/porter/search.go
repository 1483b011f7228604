package porter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// contentOption finds an FTS5 table's content= option (external content,
// or contentless).
var contentOption = regexp.MustCompile(`\bcontent\s*=`)

// searchQuery returns the query reading event_search rows from a rowid on,
// and the one counting them. The rows are read from the table holding the
// text: the content table of the engine's FTS5 table (a plain table, much
// cheaper to read than through the virtual table), or of Synapse's FTS4 one,
// which the cgo-free SQLite has no module for. Their events are joined on the
// PostgreSQL side (copySearch).
func (p *porter) searchQuery() (query, count string) {
	sql := strings.ToLower(p.srcAll["event_search"])
	if strings.Contains(sql, "fts5") {
		if _, ok := p.srcAll["event_search_content"]; ok && !contentOption.MatchString(sql) {
			return `SELECT id, c0, c1, c2, c3, c4 FROM event_search_content WHERE id >= ? ORDER BY id LIMIT ?`,
				`SELECT count(*) FROM event_search_content WHERE id >= ?`
		}
		return `SELECT rowid, event_id, room_id, sender, key, value FROM event_search WHERE rowid >= ? ORDER BY rowid LIMIT ?`,
			`SELECT count(*) FROM event_search WHERE rowid >= ?`
	}
	return `SELECT docid, c0event_id, c1room_id, c2sender, c3key, c4value FROM event_search_content WHERE docid >= ? ORDER BY docid LIMIT ?`,
		`SELECT count(*) FROM event_search_content WHERE docid >= ?`
}

// searchColumns are what is read of each search row.
var searchColumns = []Column{
	{Name: "event_id", kind: kText}, {Name: "room_id", kind: kText}, {Name: "sender", kind: kText},
	{Name: "key", kind: kText}, {Name: "value", kind: kText},
}

// copySearch ports event_search: each batch becomes tsvectors
// (to_tsvector('english', value)) in one INSERT ... SELECT over the batch's
// columns passed as arrays, joined with events (already copied and indexed:
// the load copies event_search after events) for their origin_server_ts and
// stream_ordering. Search rows whose event is missing are skipped, as
// Synapse's porter skips them, and counted.
//
// Its rows are the costliest to write, so two sessions write batches at
// once (with Jobs of 2 or more) while the next ones are read; the batches
// still commit one after the other, each with its bookkeeping, so the
// progress recorded is always a whole prefix of the table.
func (p *porter) copySearch(ctx context.Context, t *Table) error {
	t0 := time.Now()
	res := TableResult{Name: t.Name, Strategy: t.Strategy, Already: t.already}
	total := res.Already + t.remaining
	p.emit(Event{Type: "table", Table: t.Name, Done: res.Already, Total: total})
	writers := min(2, p.opts.Jobs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan searchBatch, writers)
	readErr := make(chan error, 1)
	go func() { readErr <- p.readSearchBatches(ctx, t, batches) }()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.withConn(ctx, func(pc *pgx.Conn) error {
				for b := range batches {
					inserted, err := writeSearchBatch(ctx, pc, b)
					if err != nil {
						return err
					}
					n := int64(len(b.rows))
					mu.Lock()
					res.Copied += inserted
					res.Skipped += n - inserted
					res.Bytes += b.bytes
					res.NUL += b.fixes.NUL
					res.BadUTF8 += b.fixes.BadUTF8
					p.emit(Event{Type: "batch", Table: t.Name, Rows: n, Bytes: b.bytes, Done: res.Already + res.Copied + res.Skipped, Total: total})
					mu.Unlock()
				}
				return nil
			})
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	cancel()
	// Drain what the reader may still hand over, so that it can return.
	for range batches {
	}
	err := first
	if rerr := <-readErr; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if res.Skipped > 0 {
		p.emit(Event{Type: "warning", Table: t.Name, Message: fmt.Sprintf("%d search rows skipped: their events are not in the events table", res.Skipped)})
	}
	p.fixesWarning(t.Name, res)
	res.Duration = time.Since(t0)
	p.addResult(res)
	p.emit(Event{Type: "table_done", Table: t.Name, Done: res.Already + res.Copied + res.Skipped, Total: total})
	return nil
}

// searchBatch is a batch of event_search rows, read and converted.
type searchBatch struct {
	rows  [][]any
	next  int64
	bytes int64
	fixes fixes
	// after is closed when the batch before it has committed; done when
	// this one has.
	after, done chan struct{}
}

// readSearchBatches reads event_search's rows from t.fwd on into batches,
// chained so that they commit in order, until there are no more (then it
// closes batches) or ctx ends.
func (p *porter) readSearchBatches(ctx context.Context, t *Table, batches chan<- searchBatch) error {
	defer close(batches)
	query, _ := p.searchQuery()
	st := &Table{Name: "event_search", Columns: searchColumns}
	fwd := t.fwd
	after := make(chan struct{})
	close(after)
	for {
		rows, ids, f, bytes, err := p.readRows(ctx, st, query, fwd, p.opts.BatchSize)
		if err != nil || len(rows) == 0 {
			return err
		}
		fwd = ids[len(ids)-1] + 1
		b := searchBatch{rows: rows, next: fwd, bytes: bytes, fixes: f, after: after, done: make(chan struct{})}
		after = b.done
		select {
		case batches <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeSearchBatch inserts one batch (its columns passed as arrays, joined
// with events), then, once the batch before it has committed, records its
// progress and commits. It returns the rows inserted.
func writeSearchBatch(ctx context.Context, pc *pgx.Conn, b searchBatch) (int64, error) {
	cols := make([][]any, len(searchColumns))
	for i := range cols {
		cols[i] = make([]any, len(b.rows))
	}
	for r, row := range b.rows {
		for i, v := range row {
			cols[i][r] = v
		}
	}
	tx, err := pc.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering)
		SELECT s.event_id, s.room_id, s.sender, s.key, to_tsvector('english', s.value), e.origin_server_ts, e.stream_ordering
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS s (event_id, room_id, sender, key, value)
		JOIN events AS e ON e.event_id = s.event_id AND e.room_id = s.room_id`,
		cols[0], cols[1], cols[2], cols[3], cols[4])
	if err != nil {
		return 0, fmt.Errorf("copy event_search: %w", err)
	}
	// Commit in order: a batch is recorded only after the ones before it.
	select {
	case <-b.after:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if _, err := tx.Exec(ctx, "UPDATE port_from_sqlite3 SET forward_rowid = $1 WHERE table_name = 'event_search'", b.next); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	close(b.done)
	return tag.RowsAffected(), nil
}
