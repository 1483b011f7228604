package schema

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"hsops/internal/db"
)

// KeyBackfill is a background update that walks a table in key order,
// batch by batch, applying a change to the rows of each key range. Its
// progress is {"last": "<key>"}: every row with key <= last is done.
type KeyBackfill struct {
	Table string
	// Key is the column walked; Numeric says it holds integers.
	Key     string
	Numeric bool
	// Filter restricts the rows walked (optional).
	Filter string
	// Apply changes the rows of a key range in tx.
	Apply func(ctx context.Context, tx *sql.Tx, env Env, r KeyRange) error
	// Finish runs in the last batch's transaction (optional).
	Finish func(ctx context.Context, tx *sql.Tx, env Env) error
}

// KeyRange is the range of keys (After, UpTo] of one batch; nil bounds are
// open.
type KeyRange struct {
	After, UpTo *string
	numeric     bool
}

// Cond renders the range as a condition on col, with its arguments.
func (r KeyRange) Cond(col string) (string, []any) {
	var conds []string
	var args []any
	arg := func(v string) any {
		if r.numeric {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		return v
	}
	if r.After != nil {
		conds = append(conds, col+" > ?")
		args = append(args, arg(*r.After))
	}
	if r.UpTo != nil {
		conds = append(conds, col+" <= ?")
		args = append(args, arg(*r.UpTo))
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

type keyProgress struct {
	Last *string `json:"last,omitempty"`
}

func (k KeyBackfill) parse(progress json.RawMessage) (keyProgress, error) {
	var p keyProgress
	if len(progress) > 0 {
		if err := json.Unmarshal(progress, &p); err != nil {
			return p, fmt.Errorf("read progress %s: %w", progress, err)
		}
	}
	return p, nil
}

func (k KeyBackfill) filtered(where string) string {
	if k.Filter == "" {
		return where
	}
	return where + " AND " + k.Filter
}

// Handler turns the back-fill into a background update handler.
func (k KeyBackfill) Handler() Handler {
	return Handler{
		Batch: func(ctx context.Context, tx *sql.Tx, env Env, progress json.RawMessage, size int) (BatchResult, error) {
			p, err := k.parse(progress)
			if err != nil {
				return BatchResult{}, err
			}
			where, args := KeyRange{After: p.Last, numeric: k.Numeric}.Cond(k.Key)
			q := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT 1 OFFSET %d", k.Key, k.Table, k.filtered(where), k.Key, size-1)
			var upper sql.NullString
			err = tx.QueryRowContext(ctx, db.Rebind(env.Engine, q), args...).Scan(&upper)
			if err != nil && err != sql.ErrNoRows {
				return BatchResult{}, err
			}
			if !upper.Valid {
				// The last, partial batch: everything after p.Last.
				var n int
				cq := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", k.Table, k.filtered(where))
				if err := tx.QueryRowContext(ctx, db.Rebind(env.Engine, cq), args...).Scan(&n); err != nil {
					return BatchResult{}, err
				}
				if n > 0 {
					if err := k.Apply(ctx, tx, env, KeyRange{After: p.Last, numeric: k.Numeric}); err != nil {
						return BatchResult{}, err
					}
				}
				if k.Finish != nil {
					if err := k.Finish(ctx, tx, env); err != nil {
						return BatchResult{}, err
					}
				}
				return BatchResult{Items: n, Done: true}, nil
			}
			if err := k.Apply(ctx, tx, env, KeyRange{After: p.Last, UpTo: &upper.String, numeric: k.Numeric}); err != nil {
				return BatchResult{}, err
			}
			return BatchResult{Items: size, Progress: keyProgress{Last: &upper.String}}, nil
		},
		Total: func(ctx context.Context, q db.Querier, env Env, progress json.RawMessage) (int64, int64, error) {
			p, err := k.parse(progress)
			if err != nil {
				return 0, 0, err
			}
			where, args := KeyRange{After: p.Last, numeric: k.Numeric}.Cond(k.Key)
			var left, total int64
			if err := q.QueryRowContext(ctx, db.Rebind(env.Engine, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", k.Table, k.filtered(where))), args...).Scan(&left); err != nil {
				return 0, 0, err
			}
			if err := q.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", k.Table, k.filtered("1 = 1"))).Scan(&total); err != nil {
				return 0, 0, err
			}
			return left, total, nil
		},
	}
}
