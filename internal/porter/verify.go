package porter

import (
	"context"
	"fmt"

	"hsops/internal/db"
	"hsops/internal/rowsum"
)

// VerifyResult compares one table on both sides.
type VerifyResult struct {
	SourceRows int64  `json:"source_rows"`
	TargetRows int64  `json:"target_rows"`
	Match      bool   `json:"match"`
	Detail     string `json:"detail,omitempty"`
}

// verify compares every copied table: row counts and an order-independent
// checksum of the contents, the source's values converted exactly as the
// copy converts them.
func (p *porter) verify(ctx context.Context) error {
	// The schema first: everything dropped for the copy must be back.
	if err := p.checkRebuilt(ctx); err != nil {
		return err
	}
	for i := range p.res.Tables {
		r := &p.res.Tables[i]
		var t *Table
		for _, c := range p.tables {
			if c.Name == r.Name {
				t = c
			}
		}
		if t == nil {
			continue
		}
		var (
			v   VerifyResult
			err error
		)
		switch t.Strategy {
		case AppendOnly, Recopy:
			v, err = p.verifyTable(ctx, t)
		case Search:
			v, err = p.verifySearch(ctx)
		default:
			continue
		}
		if err != nil {
			return err
		}
		r.Verify = &v
		if !v.Match {
			p.res.VerifyFailed = true
			p.emit(Event{Type: "warning", Table: t.Name, Message: "verification: " + v.Detail})
		}
	}
	return nil
}

func (p *porter) sourceSum(ctx context.Context, t *Table, query string) (rowsum.Sum, error) {
	rows, err := p.src.QueryContext(ctx, query)
	if err != nil {
		return rowsum.Sum{}, err
	}
	defer rows.Close()
	raw := make([]any, len(t.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var s rowsum.Sum
	var f fixes
	var buf []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return rowsum.Sum{}, err
		}
		buf = buf[:0]
		for i, c := range t.Columns {
			v, _ := convert(raw[i], c.kind, &f)
			buf = rowsum.Field(buf, v, renderKind(c.kind))
		}
		s.Add(buf)
	}
	return s, rows.Err()
}

func (p *porter) verifyTable(ctx context.Context, t *Table) (VerifyResult, error) {
	src, err := p.sourceSum(ctx, t, "SELECT "+columnList(t)+" FROM "+db.QuoteIdent(t.Name))
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify %s: %w", t.Name, err)
	}
	tgt, err := rowsum.Table(ctx, p.tgt, db.QuoteIdent(t.Name), sumColumns(t))
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify %s: %w", t.Name, err)
	}
	return compare(src, tgt), nil
}

func (p *porter) verifySearch(ctx context.Context) (VerifyResult, error) {
	st := &Table{Name: "event_search", Columns: searchColumns[:4]}
	var q string
	if fts5(p.srcAll["event_search"]) {
		q = `SELECT es.event_id, es.room_id, es.sender, es.key FROM event_search AS es
			JOIN events AS e ON e.event_id = es.event_id AND e.room_id = es.room_id`
	} else {
		q = `SELECT c.c0event_id, c.c1room_id, c.c2sender, c.c3key FROM event_search_content AS c
			JOIN events AS e ON e.event_id = c.c0event_id AND e.room_id = c.c1room_id`
	}
	src, err := p.sourceSum(ctx, st, q)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify event_search: %w", err)
	}
	tgt, err := rowsum.Table(ctx, p.tgt, "event_search", []rowsum.Column{{Name: "event_id"}, {Name: "room_id"}, {Name: "sender"}, {Name: "key"}})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify event_search: %w", err)
	}
	return compare(src, tgt), nil
}

func compare(src, tgt rowsum.Sum) VerifyResult {
	v := VerifyResult{SourceRows: src.Rows, TargetRows: tgt.Rows, Match: src == tgt}
	switch {
	case v.Match:
	case src.Rows != tgt.Rows:
		v.Detail = fmt.Sprintf("%d rows in SQLite, %d in PostgreSQL", src.Rows, tgt.Rows)
	default:
		v.Detail = fmt.Sprintf("same row count (%d) but different contents", src.Rows)
	}
	return v
}
