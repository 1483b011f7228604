package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
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
	// What an interruption leaves is counted from the runner's events:
	// each batch commits with its progress.
	var (
		finished      int
		current       string
		batches, done int64
	)
	onEvent := r.OnEvent
	r.OnEvent = func(ev UpdateEvent) {
		switch ev.Type {
		case "start":
			current, batches, done = ev.Update, 0, 0
		case "batch":
			batches++
			done = ev.Done
		case "done":
			finished++
			current = ""
		}
		if onEvent != nil {
			onEvent(ev)
		}
	}
	defer func() { r.OnEvent = onEvent }()
	if only != "" {
		err = r.RunOne(ctx, only)
	} else {
		err = r.RunAll(ctx)
	}
	if err != nil {
		return nil, fault.InterruptCtx(ctx, err, updatesCommitted(finished, current, batches, done))
	}
	n := len(pending)
	if only != "" {
		n = 1
	}
	return &RunReport{Updates: n, Duration: time.Since(t0)}, nil
}

// updatesCommitted says what an interrupted run of background updates had
// committed: the updates finished, and the batches of the one running.
func updatesCommitted(finished int, current string, batches, done int64) string {
	var parts []string
	switch finished {
	case 0:
	case 1:
		parts = append(parts, "1 background update finished")
	default:
		parts = append(parts, fmt.Sprintf("%d background updates finished", finished))
	}
	if current != "" {
		unit := "batches"
		if batches == 1 {
			unit = "batch"
		}
		parts = append(parts, fmt.Sprintf("%s kept its %d committed %s (%d items)", current, batches, unit, done))
	}
	if len(parts) == 0 {
		return "no batch was committed"
	}
	return strings.Join(parts, "; ")
}
