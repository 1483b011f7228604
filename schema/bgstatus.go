package schema

import (
	"context"
	"encoding/json"
	"time"

	"hsops/internal/db"
)

// UpdateStatus is a pending background update as an operator sees it.
type UpdateStatus struct {
	PendingUpdate
	// Next marks the update the scheduler runs next.
	Next bool `json:"next"`
	// Handled says this version has a handler for it (engine databases
	// only: Synapse runs its own).
	Handled bool `json:"handled_by_hsops"`
	// Left and Total are the handler's estimate of the items to do, when
	// it has one.
	Left  *int64 `json:"items_left,omitempty"`
	Total *int64 `json:"items_total,omitempty"`
}

// UpdatesStatus is the background-update queue of one database.
type UpdatesStatus struct {
	Kind    Kind
	Pending []UpdateStatus
	// Blocked is why no update can run next (a dependency cycle), if so.
	Blocked error
}

// Status describes the pending updates of a database in state st (read
// from d, which must be open): which runs next, and on an engine database
// which the registry handles and how many items each has left.
func (r *Registry) Status(ctx context.Context, d *db.DB, st *State) UpdatesStatus {
	out := UpdatesStatus{Kind: st.Kind}
	next, nextErr := Next(st.Updates)
	out.Blocked = nextErr
	for _, u := range st.Updates {
		s := UpdateStatus{PendingUpdate: u, Next: nextErr == nil && next.Name == u.Name}
		if h, ok := r.Lookup(u.Name); ok && st.Kind == KindEngine {
			s.Handled = true
			if h.Total != nil {
				if left, total, err := h.Total(ctx, d, Env{Engine: d.Engine}, json.RawMessage(u.Progress)); err == nil {
					s.Left, s.Total = &left, &total
				}
			}
		}
		out.Pending = append(out.Pending, s)
	}
	return out
}

// RunReport is what RunPending did.
type RunReport struct {
	// Updates is the number of updates run to completion.
	Updates  int
	Duration time.Duration
}

// RunPending runs the pending updates to completion (or only the named
// one) under the schema lock, which it takes as holder.
func (r *Runner) RunPending(ctx context.Context, holder, only string) (*RunReport, error) {
	lock, err := AcquireLock(ctx, r.DB, holder)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	t0 := time.Now()
	pending, err := ReadUpdates(ctx, r.DB)
	if err != nil {
		return nil, err
	}
	if only != "" {
		err = r.RunOne(ctx, only)
	} else {
		err = r.RunAll(ctx)
	}
	if err != nil {
		return nil, err
	}
	n := len(pending)
	if only != "" {
		n = 1
	}
	return &RunReport{Updates: n, Duration: time.Since(t0)}, nil
}
