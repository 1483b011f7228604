package engine

import (
	"context"
	"embed"
	"strings"

	"hsops/internal/db"
	"hsops/internal/repair"
	"hsops/schema"
)

//go:embed common main state
var files embed.FS

// Name identifies the engine's schema in the mark of the databases it
// creates (hsops_engine.engine).
const Name = "hsops"

// Schema returns the hsops engine's schema: versions 68 to 83, its SQL, its
// Go deltas and the handlers of the background updates its deltas queue.
func Schema() *schema.Set {
	return &schema.Set{
		Name:     Name,
		FS:       files,
		Version:  83,
		Oldest:   68,
		Compat:   compat,
		GoDeltas: goDeltas(),
		Updates:  updates(),
	}
}

// compat is, for each schema version, the compat version of the last
// Synapse release with that SCHEMA_VERSION (spec 6.1). 75 never shipped in a
// release; its value sits between 74's and 76's.
var compat = map[int]int{
	68: 66, 69: 69, 70: 69, 71: 69, 72: 72, 73: 73, 74: 73, 75: 74,
	76: 74, 77: 76, 78: 76, 79: 76, 80: 76, 81: 80, 82: 80, 83: 83,
}

// explainDuplicateEdges names the cause when state_group_edges_unique_idx
// fails on duplicated rows, which block it for ever: a
// *repair.DuplicateEdgesError, whose hint is the repair.
func explainDuplicateEdges(ctx context.Context, q db.Querier, _ schema.Env, err error) error {
	if !isUniqueViolation(err) {
		return err
	}
	pairs, extra, cerr := repair.CountDuplicateEdges(ctx, q)
	if cerr != nil || pairs == 0 {
		return err
	}
	return &repair.DuplicateEdgesError{Pairs: pairs, ExtraRows: extra, Err: err}
}

func isUniqueViolation(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505") ||
		strings.Contains(msg, "could not create unique index") || strings.Contains(msg, "duplicate key")
}
