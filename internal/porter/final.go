package porter

// A port whose cost follows what moved: what a switch's final port sets
// (port_db --switch-config stops the homeserver for it, so every second it
// takes is downtime). Each option, and why it is safe:
//
// PagesChecked (no whole-file quick_check). The caller checked every page
// of this database minutes ago: the switch's pre-copy ran quick_check on a
// snapshot of it (the online backup API copies pages as they are, so a
// corrupt page of the live file is a corrupt page of the snapshot). What
// the final port reads is what changed since: new rows of append-only
// tables, the re-copied tables, and the b-tree pages leading to them. Those
// pages are read through SQLite, which checks each page it loads (its
// header, cell count and cell pointers) and stops with SQLITE_CORRUPT on
// one it cannot use. What a read does not check is the order of keys,
// which a seek trusts: the moved-rows verification below reads the new
// rows again from the table's other end, by the b-tree's pointers rather
// than a seek to where the copy began, requiring their rowids in strict
// order, so rows a damaged interior page hid from the copy show as a
// difference. The pages the final port does not read hold rows PostgreSQL
// already has, copied and checked before: what is given up is the check of
// pages nobody reads (indexes of the SQLite file included, which a port
// never uses).
//
// KeepUnchanged (re-copied tables compared, not copied, when equal). Both
// sides are read whole and summed (row count and order-independent content
// checksum, the values converted as the copy converts them); a table equal
// on both sides is exactly what a copy would produce, so it is neither
// emptied nor copied, and the comparison is its verification. Nothing is
// recorded between runs: what PostgreSQL holds is compared, not what an
// earlier run believed it wrote.
//
// EstimateAlready (no count of what earlier runs ported). Those counts only
// feed progress; PostgreSQL's count(*) reads the whole table.
//
// VerifyMoved (verification of what this run copied). For an append-only
// table: the source rows of the rowid ranges this run copied, against the
// target rows this run inserted, which are found through an index of the
// target (its leading column: the one with the most distinct values among
// the moved rows) and told apart by their xmin, the transaction that
// inserted them, between two transaction ids taken before and after the
// copy (the port holds the target's lock, and the homeserver is stopped:
// nothing else inserts meanwhile; anything that did would show as a
// difference). A table this run ported from nothing (no progress recorded)
// and a re-copied table that was copied are compared whole; a kept one was
// compared before. A whole-table row count is not part of it: on
// PostgreSQL it reads the whole table (port_db --verify does it all).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"hsops/internal/db"
	"hsops/internal/parallel"
	"hsops/internal/portstate"
	"hsops/internal/rowsum"
)

// MovedCheck is how VerifyMoved compares what a run copied.
type MovedCheck int

// The verifications of what moved.
const (
	// NoMovedCheck: none.
	NoMovedCheck MovedCheck = iota
	// MovedCounts compares the row counts of what moved.
	MovedCounts
	// MovedChecksums compares row counts and content checksums.
	MovedChecksums
)

// movedMark is where the copy began: the target's transaction id then.
type movedMark struct {
	xid int64
}

// keyBatch is how many key values one lookup of moved rows sends.
const keyBatch = 20000

// step records the time of a part of the checks phase.
func (p *porter) step(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Steps = append(p.res.Steps, Phase{Name: name, Millis: d.Milliseconds()})
}

// countAlready sets what earlier runs ported of an append-only table: a
// count, or with EstimateAlready PostgreSQL's estimate.
func (p *porter) countAlready(ctx context.Context, t *Table) error {
	if p.opts.EstimateAlready {
		var est sql.NullFloat64
		err := p.tgt.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE relname = $1 AND relnamespace = current_schema()::regnamespace", t.Name).Scan(&est)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		t.already = max(int64(est.Float64), 0)
		return nil
	}
	return p.tgt.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(t.Name)).Scan(&t.already)
}

// forEach runs fn on each table, up to Jobs at once; the first error wins.
func (p *porter) forEach(ctx context.Context, tables []*Table, fn func(context.Context, *Table) error) error {
	return parallel.For(ctx, p.opts.Jobs, len(tables), func(ctx context.Context, i int) error { return fn(ctx, tables[i]) })
}

// compareRecopied sums every re-copied table on both sides and marks
// those equal to be kept. It returns each table's source row count.
func (p *porter) compareRecopied(ctx context.Context) (map[*Table]int64, error) {
	var tables []*Table
	for _, t := range p.tables {
		t.keep, t.kept = false, VerifyResult{}
		if t.Strategy == Recopy && len(t.Columns) > 0 {
			tables = append(tables, t)
		}
	}
	var mu sync.Mutex
	counts := map[*Table]int64{}
	err := p.forEach(ctx, tables, func(ctx context.Context, t *Table) error {
		src, tgt, err := p.sumBoth(ctx, t)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		counts[t] = src.Rows
		if src == tgt {
			t.keep, t.kept = true, compare(src, tgt)
		}
		return nil
	})
	return counts, err
}

// sumBoth sums a whole table on both sides at once.
func (p *porter) sumBoth(ctx context.Context, t *Table) (src, tgt rowsum.Sum, err error) {
	var srcErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		src, srcErr = p.sourceSum(ctx, t, "SELECT "+columnList(t)+" FROM "+db.QuoteIdent(t.Name))
	}()
	tgt, err = rowsum.Table(ctx, p.tgt, db.QuoteIdent(t.Name), sumColumns(t))
	<-done
	if srcErr != nil {
		return src, tgt, corruptErr(fmt.Errorf("compare %s: %w", t.Name, srcErr))
	}
	if err != nil {
		return src, tgt, fmt.Errorf("compare %s: %w", t.Name, err)
	}
	return src, tgt, nil
}

func sumColumns(t *Table) []rowsum.Column {
	cols := make([]rowsum.Column, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = rowsum.Column{Name: c.Name, Kind: renderKind(c.kind)}
	}
	return cols
}

// keepTable reports a re-copied table left as it was.
func (p *porter) keepTable(t *Table) error {
	v := t.kept
	p.emit(Event{Type: "table", Table: t.Name, Done: v.TargetRows, Total: v.TargetRows})
	p.addResult(TableResult{Name: t.Name, Strategy: t.Strategy, Already: v.TargetRows, Kept: true, Verify: &v})
	p.emit(Event{Type: "table_done", Table: t.Name, Done: v.TargetRows, Total: v.TargetRows})
	return nil
}

// markMoved notes where the copy begins, for VerifyMoved.
func (p *porter) markMoved(ctx context.Context) error {
	if p.opts.VerifyMoved == NoMovedCheck {
		return nil
	}
	var xid int64
	if err := p.tgt.QueryRowContext(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return fmt.Errorf("read the target's transaction id: %w", err)
	}
	p.moved = &movedMark{xid: xid}
	return nil
}

// checkRebuilt fails the verification while anything dropped for the copy
// is not back.
func (p *porter) checkRebuilt(ctx context.Context) error {
	deferred, err := readDeferred(ctx, p.tgt)
	if err != nil {
		return err
	}
	if n := len(deferred); n > 0 {
		p.res.VerifyFailed = true
		p.res.InProgress = fmt.Sprintf("%d indexes and constraints dropped for the copy are not rebuilt yet (%s of %s first)", n, deferred[0], deferred[0].Table)
		p.emit(Event{Type: "warning", Message: "verification: " + portstate.ErrInProgress.Error() + ": " + p.res.InProgress})
	}
	return nil
}

// verifyMoved compares what this run copied on both sides (see the top of
// this file).
func (p *porter) verifyMoved(ctx context.Context) error {
	if err := p.checkRebuilt(ctx); err != nil {
		return err
	}
	if p.moved == nil {
		return fmt.Errorf("verify what moved: the copy's start was not marked")
	}
	var hi int64
	if err := p.tgt.QueryRowContext(ctx, "SELECT txid_current()").Scan(&hi); err != nil {
		return fmt.Errorf("read the target's transaction id: %w", err)
	}
	win := xidWindow{lo: p.moved.xid, hi: hi}
	end, err := p.readProgress(ctx)
	if err != nil {
		return err
	}
	results := map[string]*TableResult{}
	for i := range p.res.Tables {
		results[p.res.Tables[i].Name] = &p.res.Tables[i]
	}
	var todo []*Table
	for _, t := range p.tables {
		if r := results[t.Name]; r != nil && (r.Copied > 0 || r.Skipped > 0 || r.Kept) {
			todo = append(todo, t)
		}
	}
	var mu sync.Mutex
	return p.forEach(ctx, todo, func(ctx context.Context, t *Table) error {
		mu.Lock()
		r := results[t.Name]
		mu.Unlock()
		var (
			v   VerifyResult
			err error
		)
		switch {
		case r.Kept:
			v = t.kept
		case t.Strategy == Recopy || t.fwd <= 1 && t.bwd >= 0:
			// Copied whole, or ported from nothing: every row of the
			// target's table is this run's.
			v, err = p.verifyWhole(ctx, t)
		case t.Strategy == AppendOnly:
			v, err = p.verifyAppended(ctx, t, end[t.Name], win)
		case t.Strategy == Search:
			v, err = p.verifySearched(ctx, t, end[t.Name], win)
		default:
			return nil
		}
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		r.Verify = &v
		if !v.Match {
			p.res.VerifyFailed = true
			p.emit(Event{Type: "warning", Table: t.Name, Message: "verification of what moved: " + v.Detail})
		}
		return nil
	})
}

// verifyWhole compares a table whole (a re-copied table, or one this run
// ported from nothing): counts, or counts and checksums.
func (p *porter) verifyWhole(ctx context.Context, t *Table) (VerifyResult, error) {
	switch {
	case t.Strategy == Search:
		return p.verifySearch(ctx)
	case p.opts.VerifyMoved == MovedChecksums:
		return p.verifyTable(ctx, t)
	}
	var a, b int64
	q := "SELECT count(*) FROM " + db.QuoteIdent(t.Name)
	if err := p.src.QueryRowContext(ctx, q).Scan(&a); err != nil {
		return VerifyResult{}, fmt.Errorf("count %s in SQLite: %w", t.Name, err)
	}
	if err := p.tgt.QueryRowContext(ctx, q).Scan(&b); err != nil {
		return VerifyResult{}, fmt.Errorf("count %s in PostgreSQL: %w", t.Name, err)
	}
	return compare(rowsum.Sum{Rows: a}, rowsum.Sum{Rows: b}), nil
}

// xidWindow holds the transactions of a run: after lo, up to hi (both
// from txid_current, with their epoch). xmin is 32 bits wide, so rows are
// matched modulo 2^32.
type xidWindow struct{ lo, hi int64 }

// predicate is the SQL condition on xmin; its two parameters are args.
func (w xidWindow) predicate(first int) (string, []any) {
	const wrap = 1 << 32
	lo := w.lo % wrap
	span := ((w.hi%wrap - lo) + wrap) % wrap
	return fmt.Sprintf("((xmin::text::bigint - $%d + %d) %% %d) BETWEEN 1 AND $%d", first, int64(wrap), int64(wrap), first+1), []any{lo, span}
}

// movedRows is the source side of what moved: the rows read, summed, and
// the values of the target's indexed columns among them.
type movedRows struct {
	sum  rowsum.Sum
	keys []keyValues
}

// keyValues are the distinct values of one indexed column among the moved
// rows.
type keyValues struct {
	col    int
	name   string
	isInt  bool
	texts  map[string]struct{}
	ints   map[int64]struct{}
	hasNul bool
}

func (k *keyValues) add(v any) {
	switch x := v.(type) {
	case nil:
		k.hasNul = true
	case string:
		k.texts[x] = struct{}{}
	case int64:
		k.ints[x] = struct{}{}
	default:
		// A value the lookup cannot send as this type.
		k.hasNul = true
	}
}

func (k *keyValues) distinct() int { return len(k.texts) + len(k.ints) }

// batches are the key values, sorted, in slices of at most n.
func (k *keyValues) batches(n int) []any {
	var out []any
	if k.isInt {
		vals := make([]int64, 0, len(k.ints))
		for v := range k.ints {
			vals = append(vals, v)
		}
		sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
		for len(vals) > 0 {
			m := min(n, len(vals))
			out, vals = append(out, vals[:m]), vals[m:]
		}
		return out
	}
	vals := make([]string, 0, len(k.texts))
	for v := range k.texts {
		vals = append(vals, v)
	}
	sort.Strings(vals)
	for len(vals) > 0 {
		m := min(n, len(vals))
		out, vals = append(out, vals[:m]), vals[m:]
	}
	return out
}

// indexedColumns are the columns of cols that lead a usable index of the
// target table (valid, not partial, not on an expression, btree) and whose
// values can be sent as text or bigint arrays.
func (p *porter) indexedColumns(ctx context.Context, table string, cols []Column) ([]keyValues, error) {
	rows, err := p.tgt.QueryContext(ctx, `SELECT DISTINCT a.attname FROM pg_index i
		JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_am am ON am.oid = ic.relam
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
		WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace
		AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND i.indkey[0] <> 0 AND am.amname = 'btree'`, table)
	if err != nil {
		return nil, fmt.Errorf("read the indexes of %s: %w", table, err)
	}
	defer rows.Close()
	var keys []keyValues
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		for i, c := range cols {
			if !strings.EqualFold(c.Name, name) {
				continue
			}
			switch typ := strings.ToLower(c.TargetType); {
			case typ == "text" || strings.HasPrefix(typ, "character varying"):
				keys = append(keys, keyValues{col: i, name: c.Name, texts: map[string]struct{}{}})
			case typ == "smallint" || typ == "integer" || typ == "bigint":
				keys = append(keys, keyValues{col: i, name: c.Name, isInt: true, ints: map[int64]struct{}{}})
			}
		}
	}
	return keys, rows.Err()
}

// readMoved reads the source rows of query (rowid first, then cols), in
// the order given (ascending or, with desc, descending rowids, which must
// come strictly so), and sums those with a rowid in [lo, hi), collecting
// the key columns' values.
//
// The queries walk the moved rows from the other end than the copy did:
// the copy seeks to where it begins and reads on; the verification starts
// from the table's last row (first, for the backward range) and stops at
// the bound, so it reaches them by the b-tree's pointers, not by its keys.
// Rows a damaged interior page hid from the copy's seek are found so, and
// show as a difference.
func (p *porter) readMoved(ctx context.Context, table string, cols []Column, query string, args []any, desc bool, lo, hi int64, into *movedRows) error {
	rs, err := p.src.QueryContext(ctx, query, args...)
	if err != nil {
		return corruptErr(fmt.Errorf("read %s: %w", table, err))
	}
	defer rs.Close()
	raw := make([]any, len(cols)+1)
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	conv := make([]any, len(cols))
	var (
		f     fixes
		buf   []byte
		prev  int64
		first = true
	)
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return corruptErr(fmt.Errorf("read %s: %w", table, err))
		}
		rowid, _ := raw[0].(int64)
		if !first && (!desc && rowid <= prev || desc && rowid >= prev) {
			return sourceErr("the SQLite database is corrupt (the rows of %s are out of order at rowid %d, after %d): port a good copy, or repair it first (sqlite3 homeserver.db .recover)", table, rowid, prev)
		}
		first, prev = false, rowid
		if rowid < lo || rowid >= hi {
			continue
		}
		buf = buf[:0]
		for i, c := range cols {
			conv[i], _ = convert(raw[i+1], c.kind, &f)
			buf = rowsum.Field(buf, conv[i], renderKind(c.kind))
		}
		into.sum.Add(buf)
		for k := range into.keys {
			into.keys[k].add(conv[into.keys[k].col])
		}
	}
	return corruptErr(rs.Err())
}

// targetMoved sums (or, for MovedCounts, counts) the target rows of table
// that this run inserted, found through the key column with the most
// distinct values among the moved rows (a scan when there is none).
func (p *porter) targetMoved(ctx context.Context, table string, cols []Column, moved *movedRows, win xidWindow) (rowsum.Sum, error) {
	var key *keyValues
	for i := range moved.keys {
		k := &moved.keys[i]
		if !k.hasNul && (key == nil || k.distinct() > key.distinct()) {
			key = k
		}
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = db.QuoteIdent(c.Name)
	}
	what := strings.Join(names, ", ")
	if p.opts.VerifyMoved == MovedCounts {
		what = "count(*)"
	}
	var total rowsum.Sum
	run := func(cond string, args []any) error {
		q := "SELECT " + what + " FROM " + db.QuoteIdent(table) + " WHERE " + cond
		if p.opts.VerifyMoved == MovedCounts {
			var n int64
			if err := p.tgt.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
				return err
			}
			total.Rows += n
			return nil
		}
		s, err := sumQuery(ctx, p.tgt, q, args, cols)
		total.Rows += s.Rows
		total.Hash += s.Hash
		return err
	}
	if key == nil {
		// No index to find them by: the whole table is read.
		cond, args := win.predicate(1)
		return total, run(cond, args)
	}
	xcond, xargs := win.predicate(2)
	cond := db.QuoteIdent(key.name) + " = ANY($1) AND " + xcond
	for _, b := range key.batches(keyBatch) {
		if err := run(cond, append([]any{b}, xargs...)); err != nil {
			return total, err
		}
	}
	return total, nil
}

// sumQuery sums the rows of a query, as rowsum.Table does a table's.
func sumQuery(ctx context.Context, d *db.DB, query string, args []any, cols []Column) (rowsum.Sum, error) {
	rows, err := d.QueryContext(ctx, query, args...)
	if err != nil {
		return rowsum.Sum{}, err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var s rowsum.Sum
	var buf []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return s, err
		}
		buf = buf[:0]
		for i, v := range vals {
			buf = rowsum.Field(buf, v, renderKind(cols[i].kind))
		}
		s.Add(buf)
	}
	return s, rows.Err()
}

// compareMoved compares the two sides of what moved: counts only with
// MovedCounts.
func (p *porter) compareMoved(src, tgt rowsum.Sum) VerifyResult {
	if p.opts.VerifyMoved == MovedCounts {
		src.Hash, tgt.Hash = 0, 0
	}
	return compare(src, tgt)
}

// verifyAppended compares the rows of an append-only table this run
// copied: forward from where it began to where it ended, and backward.
func (p *porter) verifyAppended(ctx context.Context, t *Table, end [2]int64, win xidWindow) (VerifyResult, error) {
	keys, err := p.indexedColumns(ctx, t.Name, t.Columns)
	if err != nil {
		return VerifyResult{}, err
	}
	moved := &movedRows{keys: keys}
	from := "SELECT rowid, " + columnList(t) + " FROM " + db.QuoteIdent(t.Name)
	// Forward: [t.fwd, end[0]); backward: (end[1], t.bwd].
	if end[0] > t.fwd {
		if err := p.readMoved(ctx, t.Name, t.Columns, from+" WHERE rowid >= ? ORDER BY rowid DESC", []any{t.fwd}, true, t.fwd, end[0], moved); err != nil {
			return VerifyResult{}, err
		}
	}
	if end[1] < t.bwd {
		if err := p.readMoved(ctx, t.Name, t.Columns, from+" WHERE rowid <= ? ORDER BY rowid", []any{t.bwd}, false, end[1]+1, t.bwd+1, moved); err != nil {
			return VerifyResult{}, err
		}
	}
	tgt, err := p.targetMoved(ctx, t.Name, t.Columns, moved, win)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify %s: %w", t.Name, err)
	}
	return p.compareMoved(moved.sum, tgt), nil
}

// verifySearched compares the event_search rows this run copied: the
// source's (those whose event exists, as the copy keeps only them) from
// where it began to where it ended.
func (p *porter) verifySearched(ctx context.Context, t *Table, end [2]int64, win xidWindow) (VerifyResult, error) {
	cols := make([]Column, 4)
	for i, c := range searchColumns[:4] {
		cols[i] = c
		cols[i].TargetType = "text"
	}
	keys, err := p.indexedColumns(ctx, "event_search", cols)
	if err != nil {
		return VerifyResult{}, err
	}
	moved := &movedRows{keys: keys}
	from, id, c := p.searchSource()
	q := fmt.Sprintf(`SELECT s.%[2]s, s.%[3]s, s.%[4]s, s.%[5]s, s.%[6]s FROM %[1]s AS s
		JOIN events AS e ON e.event_id = s.%[3]s AND e.room_id = s.%[4]s
		WHERE s.%[2]s >= ? ORDER BY s.%[2]s DESC`, from, id, c[0], c[1], c[2], c[3])
	if end[0] > t.fwd {
		if err := p.readMoved(ctx, "event_search", cols, q, []any{t.fwd}, true, t.fwd, end[0], moved); err != nil {
			return VerifyResult{}, err
		}
	}
	tgt, err := p.targetMoved(ctx, "event_search", cols, moved, win)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify event_search: %w", err)
	}
	return p.compareMoved(moved.sum, tgt), nil
}

// corruptErr turns an error in which SQLite found a malformed page into the
// refusal of a corrupt source (other errors are returned as they are).
func corruptErr(err error) error {
	var coded interface{ Code() int }
	if err == nil || !errors.As(err, &coded) || coded.Code()&0xff != sqliteCorrupt {
		return err
	}
	return sourceErr("the SQLite database is corrupt (%s): port a good copy, or repair it first (sqlite3 homeserver.db .recover)", strings.Join(strings.Fields(err.Error()), " "))
}

// sqliteCorrupt is SQLITE_CORRUPT, the primary code of a malformed page.
const sqliteCorrupt = 11
