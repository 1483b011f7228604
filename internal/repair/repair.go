// Package repair runs the repairs of known corruptions of homeserver
// databases, engine and Synapse alike, as an operator asks for them: it
// finds the database, refuses what it must not touch (a database with no
// homeserver schema; without Force, one its homeserver is using), then
// plans (DryRun) or applies the repair and reports what it found and did.
package repair

import (
	"context"
	"fmt"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/inspect"
	"hsops/internal/offline"
	"hsops/internal/portstate"
	"hsops/schema"
)

// Options control a repair.
type Options struct {
	// DryRun counts and shows, changing nothing.
	DryRun bool
	// Force repairs even though the homeserver seems to be running.
	Force bool
}

// shown is how many duplicated pairs a report lists.
const shown = 20

// EdgesReport is what the state_group_edges repair found and did (also the
// --json shape).
type EdgesReport struct {
	Database string `json:"database"`
	Kind     string `json:"kind"`
	// Duplicates are the most repeated duplicated pairs (at most 20).
	Duplicates []DuplicateEdge    `json:"duplicates"`
	Result     *RepairEdgesResult `json:"result"`
	// Engine says the hsops engine owns the database (it then runs the
	// blocked background update itself; Synapse does on its own).
	Engine bool `json:"-"`
}

// More is the number of duplicated pairs the report does not list.
func (r *EdgesReport) More() int64 {
	return r.Result.Pairs - int64(len(r.Duplicates))
}

// StateGroupEdges removes the duplicate rows of state_group_edges that
// block the state_group_edges_unique_idx background update (Synapse
// v1.60.0's upgrade notes), in the database that holds the state store.
func StateGroupEdges(ctx context.Context, cfg *config.Config, opts Options) (*EdgesReport, error) {
	dbc, err := cfg.DatabaseFor("state")
	if err != nil {
		return nil, err
	}
	ro, st, err := inspect.ForWriting(ctx, dbc)
	if err != nil {
		return nil, err
	}
	err = portstate.Check(ctx, ro)
	ro.Close()
	if err != nil {
		return nil, err
	}
	if st.Kind == schema.KindEmpty || st.Kind == schema.KindUnknown {
		return nil, fmt.Errorf("%w: it has no state_group_edges table", schema.ErrNotHomeserver)
	}
	const app = "hsops update_database repair"
	var d *db.DB
	if opts.DryRun {
		d, err = db.Open(ctx, dbc, db.Options{ReadOnly: true, AppName: app})
	} else {
		d, err = offline.Open(ctx, cfg, dbc, offline.Options{AppName: app, Force: opts.Force, Writes: []string{"state_group_edges"}})
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if !opts.DryRun {
		// The schema lock keeps an upgrade, a rollback or a run of the
		// background updates (which builds the index the repair unblocks)
		// off the table while it changes.
		lock, err := schema.AcquireLock(ctx, d, "update_database repair")
		if err != nil {
			return nil, err
		}
		defer lock.Release()
	}
	dups, err := ListDuplicateEdges(ctx, d, shown)
	if err != nil {
		return nil, err
	}
	res, err := RepairEdges(ctx, d, opts.DryRun)
	if err != nil {
		return nil, err
	}
	return &EdgesReport{Database: inspect.Describe(dbc), Kind: st.Kind.String(), Duplicates: dups, Result: res, Engine: st.Kind == schema.KindEngine}, nil
}
