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
// each with its event's origin_server_ts and stream_ordering, and the one
// counting them. The rows are read from the table holding the text: the
// content table of the engine's FTS5 table (a plain table, much cheaper to
// read than through the virtual table), or of Synapse's FTS4 one, which the
// cgo-free SQLite has no module for. Their events are joined in SQLite, as
// Synapse's porter does, so that the copy needs nothing of the target's
// events table and starts with the load; the join is a left one, so that
// the rows whose event is missing are counted (readSearchBatches skips them,
// as Synapse's inner join does).
func (p *porter) searchQuery() (query, count string) {
	from, id, cols := p.searchSource()
	return "SELECT es." + id + ", es." + strings.Join(cols, ", es.") + ", e.origin_server_ts, e.stream_ordering, e.rowid" +
			" FROM " + from + " AS es LEFT JOIN events AS e ON e.event_id = es." + cols[0] + " AND e.room_id = es." + cols[1] +
			" WHERE es." + id + " >= ? ORDER BY es." + id + " LIMIT ?",
		"SELECT count(*) FROM " + from + " WHERE " + id + " >= ?"
}

// searchColumns are what is kept of each search row; searchRead adds what
// is read with it: its event's origin_server_ts and stream_ordering, and
// the event's rowid (NULL when the event is missing).
var (
	searchColumns = []Column{
		{Name: "event_id", kind: kText}, {Name: "room_id", kind: kText}, {Name: "sender", kind: kText},
		{Name: "key", kind: kText}, {Name: "value", kind: kText},
	}
	searchRead = append(append([]Column(nil), searchColumns...),
		Column{Name: "origin_server_ts", kind: kInt}, Column{Name: "stream_ordering", kind: kInt}, Column{Name: "events.rowid", kind: kInt})
)

// searchSource is where event_search's rows are read from: the table, its
// rowid, and its columns event_id, room_id, sender, key and value.
func (p *porter) searchSource() (from, id string, cols []string) {
	from, id, cols = "event_search_content", "docid", []string{"c0event_id", "c1room_id", "c2sender", "c3key", "c4value"}
	if sql := strings.ToLower(p.srcAll["event_search"]); strings.Contains(sql, "fts5") {
		from, id, cols = "event_search", "rowid", []string{"event_id", "room_id", "sender", "key", "value"}
		if _, ok := p.srcAll["event_search_content"]; ok && !contentOption.MatchString(sql) {
			from, id, cols = "event_search_content", "id", []string{"c0", "c1", "c2", "c3", "c4"}
		}
	}
	return from, id, cols
}

// copySearch ports event_search: each batch becomes tsvectors
// (to_tsvector('english', value)) in one INSERT ... SELECT over the batch's
// columns passed as arrays, with their events' origin_server_ts and
// stream_ordering read with them (searchQuery). Search rows whose event is
// missing are skipped, as Synapse's porter skips them, and counted.
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
	st := &Table{Name: "event_search", Columns: searchRead}
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
	// The columns of the rows whose event was found (the last one read is
	// its rowid), as arrays.
	cols := make([][]any, len(searchRead)-1)
	for i := range cols {
		cols[i] = make([]any, 0, len(b.rows))
	}
	for _, row := range b.rows {
		if row[len(row)-1] == nil {
			continue
		}
		for i := range cols {
			cols[i] = append(cols[i], row[i])
		}
	}
	if len(cols[0]) == 0 {
		cols = nil
	}
	tx, err := pc.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	var inserted int64
	if cols != nil {
		tag, err := tx.Exec(ctx, `INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering)
			SELECT s.event_id, s.room_id, s.sender, s.key, to_tsvector('english', s.value), s.origin_server_ts, s.stream_ordering
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
				AS s (event_id, room_id, sender, key, value, origin_server_ts, stream_ordering)`,
			cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6])
		if err != nil {
			return 0, fmt.Errorf("copy event_search: %w", err)
		}
		inserted = tag.RowsAffected()
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
	return inserted, nil
}
