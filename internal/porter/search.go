package porter

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// searchQuery returns the query reading event_search rows after a rowid,
// joined with their events as Synapse's porter does. The engine's table is
// FTS5 and is read directly; Synapse's is FTS4, which the cgo-free SQLite
// has no module for, so it is read through its content shadow table.
func (p *porter) searchQuery() (query, count string) {
	sql := strings.ToLower(p.srcAll["event_search"])
	if strings.Contains(sql, "fts5") {
		return `SELECT es.rowid, es.event_id, es.room_id, es.sender, es.key, es.value, e.origin_server_ts, e.stream_ordering
			FROM event_search AS es JOIN events AS e ON e.event_id = es.event_id AND e.room_id = es.room_id
			WHERE es.rowid >= ? ORDER BY es.rowid LIMIT ?`,
			`SELECT count(*) FROM event_search WHERE rowid >= ?`
	}
	return `SELECT c.docid, c.c0event_id, c.c1room_id, c.c2sender, c.c3key, c.c4value, e.origin_server_ts, e.stream_ordering
			FROM event_search_content AS c JOIN events AS e ON e.event_id = c.c0event_id AND e.room_id = c.c1room_id
			WHERE c.docid >= ? ORDER BY c.docid LIMIT ?`,
		`SELECT count(*) FROM event_search_content WHERE docid >= ?`
}

var searchColumns = []Column{
	{Name: "event_id", kind: kText}, {Name: "room_id", kind: kText}, {Name: "sender", kind: kText},
	{Name: "key", kind: kText}, {Name: "value", kind: kText},
	{Name: "origin_server_ts", kind: kInt}, {Name: "stream_ordering", kind: kInt},
}

// copySearch ports event_search: each batch is copied into a temporary
// staging table and turned into tsvectors (to_tsvector('english', value))
// by one INSERT, in the batch's transaction with its bookkeeping. Search rows
// whose event is missing are skipped, as Synapse's porter skips them, and
// counted.
func (p *porter) copySearch(ctx context.Context, t *Table) error {
	t0 := time.Now()
	res := TableResult{Name: t.Name, Strategy: t.Strategy}
	fwd := t.fwd
	res.Already = t.already
	query, count := p.searchQuery()
	total := res.Already + t.remaining
	p.emit(Event{Type: "table", Table: t.Name, Done: res.Already, Total: total})
	st := &Table{Name: "event_search", Columns: searchColumns}
	done := res.Already
	err := p.withConn(ctx, func(pc *pgx.Conn) error {
		if _, err := pc.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS hsops_search_stage (
			event_id text, room_id text, sender text, key text, value text, origin_server_ts bigint, stream_ordering bigint
		) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		for {
			rows, ids, f, bytes, err := p.readRows(ctx, st, query, fwd, p.opts.BatchSize)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return nil
			}
			next := ids[len(ids)-1] + 1
			tx, err := pc.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"hsops_search_stage"}, []string{"event_id", "room_id", "sender", "key", "value", "origin_server_ts", "stream_ordering"}, pgx.CopyFromRows(rows)); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("copy event_search: %w", err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering)
				SELECT event_id, room_id, sender, key, to_tsvector('english', value), origin_server_ts, stream_ordering FROM hsops_search_stage`); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("index event_search: %w", err)
			}
			if _, err := tx.Exec(ctx, "UPDATE port_from_sqlite3 SET forward_rowid = $1 WHERE table_name = 'event_search'", next); err != nil {
				_ = tx.Rollback(ctx)
				return err
			}
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			fwd = next
			n := int64(len(rows))
			done += n
			res.Copied += n
			res.Bytes += bytes
			res.NUL += f.NUL
			res.BadUTF8 += f.BadUTF8
			p.emit(Event{Type: "batch", Table: t.Name, Rows: n, Bytes: bytes, Done: done, Total: total})
		}
	})
	if err != nil {
		return err
	}
	// Rows whose event is missing were not copied.
	var left int64
	if err := p.src.QueryRowContext(ctx, count, fwd).Scan(&left); err == nil {
		res.Skipped = total - res.Already - res.Copied - left
	}
	if res.Skipped > 0 {
		p.emit(Event{Type: "warning", Table: t.Name, Message: fmt.Sprintf("%d search rows skipped: their events are not in the events table", res.Skipped)})
	}
	p.fixesWarning(t.Name, res)
	res.Duration = time.Since(t0)
	p.addResult(res)
	p.emit(Event{Type: "table_done", Table: t.Name, Done: done, Total: total})
	return nil
}
