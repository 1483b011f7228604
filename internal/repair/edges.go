package repair

import (
	"context"
	"database/sql"
	"fmt"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/plural"
	"hsops/schema"
)

// RepairEdgesCommand is what an operator runs to remove duplicate
// state_group_edges rows.
const RepairEdgesCommand = "update_database repair state-group-edges --database-config <config>"

// DuplicateEdgesError is the failure of the state_group_edges_unique_idx
// update when duplicate rows exist: the index can never be built until they
// are removed.
type DuplicateEdgesError struct {
	// Pairs is the number of (state_group, prev_state_group) pairs that
	// occur more than once; ExtraRows the rows a repair removes.
	Pairs, ExtraRows int64
	Err              error
}

func (e *DuplicateEdgesError) Error() string {
	return fmt.Sprintf("state_group_edges has %s (%s), so its unique index cannot be built", plural.Count(e.Pairs, "duplicated (state_group, prev_state_group) pair"), plural.Count(e.ExtraRows, "extra row"))
}

func (e *DuplicateEdgesError) Unwrap() error { return e.Err }

// Class is a failed background update's.
func (e *DuplicateEdgesError) Class() fault.Class { return fault.Update }

// Hint is the repair, then the updates again.
func (e *DuplicateEdgesError) Hint() string {
	return "remove the duplicates, then run the updates again:\n  " + RepairEdgesCommand + "\n  update_database --database-config <config> --run-background-updates"
}

// CountDuplicateEdges counts duplicated pairs and the rows beyond the first
// of each.
func CountDuplicateEdges(ctx context.Context, q db.Querier) (pairs, extra int64, err error) {
	var p, x sql.NullInt64
	err = q.QueryRowContext(ctx, `SELECT count(*), sum(n - 1) FROM (
		SELECT count(*) AS n FROM state_group_edges GROUP BY state_group, prev_state_group HAVING count(*) > 1
	) AS dups`).Scan(&p, &x)
	if err != nil {
		return 0, 0, fmt.Errorf("count duplicate state_group_edges: %w", err)
	}
	return p.Int64, x.Int64, nil
}

// DuplicateEdge is one duplicated pair and how many times it occurs.
type DuplicateEdge struct {
	StateGroup     int64 `json:"state_group"`
	PrevStateGroup int64 `json:"prev_state_group"`
	Count          int64 `json:"count"`
}

// ListDuplicateEdges returns up to limit duplicated pairs, most repeated
// first.
func ListDuplicateEdges(ctx context.Context, d *db.DB, limit int) ([]DuplicateEdge, error) {
	rows, err := d.QueryContext(ctx, d.Rebind(`SELECT state_group, prev_state_group, count(*) FROM state_group_edges
		GROUP BY state_group, prev_state_group HAVING count(*) > 1
		ORDER BY count(*) DESC, state_group, prev_state_group LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("list duplicate state_group_edges: %w", err)
	}
	defer rows.Close()
	var out []DuplicateEdge
	for rows.Next() {
		var e DuplicateEdge
		if err := rows.Scan(&e.StateGroup, &e.PrevStateGroup, &e.Count); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RepairEdgesResult is what a repair did.
type RepairEdgesResult struct {
	Pairs   int64 `json:"duplicated_pairs"`
	Removed int64 `json:"rows_removed"`
	// Remaining is the number of rows left in the table.
	Remaining int64 `json:"rows_remaining"`
	DryRun    bool  `json:"dry_run"`
}

// RepairEdges removes every duplicate row of state_group_edges except the
// physically first of each pair (lowest ctid or rowid), in one transaction,
// exactly as the v1.60.0 upgrade notes prescribe. It checks inside the
// transaction that each distinct pair is still present once before
// committing. With dryRun it counts and changes nothing.
func RepairEdges(ctx context.Context, d *db.DB, dryRun bool) (*RepairEdgesResult, error) {
	res := &RepairEdgesResult{DryRun: dryRun}
	var err error
	if res.Pairs, res.Removed, err = CountDuplicateEdges(ctx, d); err != nil {
		return nil, err
	}
	if dryRun || res.Pairs == 0 {
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM state_group_edges").Scan(&res.Remaining); err != nil {
			return nil, err
		}
		return res, nil
	}
	rowID := "rowid"
	if d.Engine == db.Postgres {
		rowID = "ctid"
	}
	del := fmt.Sprintf(`DELETE FROM state_group_edges WHERE (%[1]s, state_group, prev_state_group) IN (
    SELECT row_id, state_group, prev_state_group
    FROM (
        SELECT
            %[1]s AS row_id,
            MIN(%[1]s) OVER (PARTITION BY state_group, prev_state_group) AS min_row_id,
            state_group,
            prev_state_group
        FROM state_group_edges
    ) AS t1
    WHERE row_id <> min_row_id
)`, rowID)
	err = schema.InTx(ctx, d, func(tx *sql.Tx) error {
		var distinctBefore int64
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT DISTINCT state_group, prev_state_group FROM state_group_edges) AS p").Scan(&distinctBefore); err != nil {
			return err
		}
		r, err := tx.ExecContext(ctx, del)
		if err != nil {
			return fmt.Errorf("delete duplicate state_group_edges: %w", err)
		}
		res.Removed, _ = r.RowsAffected()
		var rowsAfter, distinctAfter int64
		if err := tx.QueryRowContext(ctx, "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT state_group, prev_state_group FROM state_group_edges) AS p) FROM state_group_edges").Scan(&rowsAfter, &distinctAfter); err != nil {
			return err
		}
		if distinctAfter != distinctBefore || rowsAfter != distinctAfter {
			return fmt.Errorf("repair check failed (%d distinct pairs before, %d after, %d rows left): nothing was changed", distinctBefore, distinctAfter, rowsAfter)
		}
		res.Remaining = rowsAfter
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
