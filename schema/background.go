package schema

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema/bookkeeping"
)

// Errors of the background-update runner.
var (
	// ErrNoHandler means a pending update has no handler in this version.
	ErrNoHandler = fault.New(fault.Update, "no handler for background update",
		"this version of the engine cannot run it: run the release that queued it, or a newer one")
	// ErrDependencyCycle means every pending update waits for another.
	ErrDependencyCycle = fault.New(fault.Update, "unable to find a background update which doesn't depend on another: dependency cycle?",
		"`update_database background status --database-config <config>` lists the queue and what each update waits for")
	// ErrUpdateNotPending means a named update is not in the queue.
	ErrUpdateNotPending = fault.New(fault.Usage, "background update is not pending",
		"`update_database background status --database-config <config>` lists the pending updates")
	// ErrUnknownJob means start_job was asked for a job this engine has not.
	ErrUnknownJob = fault.New(fault.Usage, "invalid job_name",
		"nothing was changed: the engine's jobs are listed above; `update_database background status` shows what is queued")
	// ErrJobQueued means the job's updates are already queued.
	ErrJobQueued = fault.New(fault.Usage, "job is already in queue of background updates",
		"nothing was changed: `update_database background run --database-config <config>` runs the queue")
)

// UpdateError reports a failed batch of a background update. The batch was
// rolled back; the update's saved progress is intact.
type UpdateError struct {
	Update string
	Err    error
	// hint is the explanation's, when the update's handler explained the
	// failure (see Handler.Explain).
	hint string
}

func (e *UpdateError) Error() string {
	return fmt.Sprintf("background update %q failed: %v", e.Update, e.Err)
}

func (e *UpdateError) Unwrap() error { return e.Err }

// Class makes a failed background update its own class.
func (e *UpdateError) Class() fault.Class { return fault.Update }

// Hint is the explanation's hint when the handler explained the failure
// (the repair that unblocks it, say), else how to run the update again.
func (e *UpdateError) Hint() string {
	if e.hint != "" {
		return e.hint
	}
	return fmt.Sprintf("the failed batch was rolled back and %q keeps its progress; fix the cause and run:\n  update_database background run --update %s --database-config <config>", e.Update, e.Update)
}

// BatchResult is what one batch of a batched update did.
type BatchResult struct {
	// Items is the number of rows (or other units) processed.
	Items int
	// Progress is saved as the update's progress_json (ignored when Done).
	Progress any
	// Done ends the update: its row is deleted in the batch's transaction.
	Done bool
}

// IndexSpec describes an index built in the background.
type IndexSpec struct {
	Name    string
	Table   string
	Columns []string
	Where   string
	Unique  bool
	// Replaces is an index dropped once the new one exists.
	Replaces string
	// ReplacesConstraint is a PostgreSQL constraint dropped once the new
	// index exists (SQLite tables were rebuilt without it).
	ReplacesConstraint string
}

// Handler runs a background update: either Batch (work in the batch's
// transaction, progress saved with it) or Index (an index build, which on
// PostgreSQL runs CONCURRENTLY outside any transaction).
type Handler struct {
	Batch func(ctx context.Context, tx *sql.Tx, env Env, progress json.RawMessage, size int) (BatchResult, error)
	Index *IndexSpec
	// Total estimates the items left and in all, for progress display.
	Total func(ctx context.Context, q db.Querier, env Env, progress json.RawMessage) (left, total int64, err error)
	// Explain, when set, turns a failure of the update into an error that
	// says what to do (its hint becomes the UpdateError's), or returns err
	// unchanged. It runs after the failed batch was rolled back.
	Explain func(ctx context.Context, q db.Querier, env Env, err error) error
}

// Registry maps update names to handlers.
type Registry struct {
	handlers map[string]Handler
	// jobs are the updates an operator may queue on demand (Synapse's
	// start_job), each a list of rows to insert.
	jobs map[string][]PendingUpdate
	// unsupported are jobs Synapse has and this schema cannot run, with
	// the reason.
	unsupported map[string]string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}, jobs: map[string][]PendingUpdate{}, unsupported: map[string]string{}}
}

// Register adds a handler.
func (r *Registry) Register(name string, h Handler) { r.handlers[name] = h }

// AddJob declares an on-demand job: StartJob queues its updates (whose
// handlers are registered as any other).
func (r *Registry) AddJob(job string, updates ...PendingUpdate) { r.jobs[job] = updates }

// Unsupported declares a job Synapse has that this schema cannot run;
// StartJob refuses it with the reason.
func (r *Registry) Unsupported(job, reason string) { r.unsupported[job] = reason }

// Lookup returns a handler.
func (r *Registry) Lookup(name string) (Handler, bool) {
	h, ok := r.handlers[name]
	return h, ok
}

// Jobs lists the on-demand jobs.
func (r *Registry) Jobs() []string {
	out := make([]string, 0, len(r.jobs))
	for n := range r.jobs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StartJob queues an on-demand job's updates (ordering 0, so they run
// before schema-queued ones), as Synapse's start_job admin API does.
func (r *Registry) StartJob(ctx context.Context, d *db.DB, job string) error {
	rows, ok := r.jobs[job]
	if !ok {
		if why, known := r.unsupported[job]; known {
			return fmt.Errorf("%w %q: %s (known jobs: %s)", ErrUnknownJob, job, why, strings.Join(r.Jobs(), ", "))
		}
		return fmt.Errorf("%w %q (known jobs: %s)", ErrUnknownJob, job, strings.Join(r.Jobs(), ", "))
	}
	book := bookkeeping.New(d.Engine)
	return InTx(ctx, d, func(tx *sql.Tx) error {
		for _, u := range rows {
			queued, err := book.Enqueue(ctx, tx, u)
			if err != nil {
				return err
			}
			if !queued {
				return fmt.Errorf("%w: job %s", ErrJobQueued, job)
			}
		}
		return nil
	})
}

// UpdateEvent reports the runner's progress.
type UpdateEvent struct {
	// Type is "start", "batch", "done" or "failed".
	Type   string `json:"event"`
	Update string `json:"update"`
	// Items is the number processed by this batch; Done the total so far in
	// this run; Left and Total estimate the work (0 when unknown).
	Items     int     `json:"items,omitempty"`
	Done      int64   `json:"done,omitempty"`
	Left      int64   `json:"left,omitempty"`
	Total     int64   `json:"total,omitempty"`
	BatchSize int     `json:"batch_size,omitempty"`
	Millis    float64 `json:"ms,omitempty"`
	// Rate is the tuned throughput, items per millisecond.
	Rate  float64 `json:"items_per_ms,omitempty"`
	Error string  `json:"error,omitempty"`
}

// perf is the per-update performance record that tunes batch sizes, as
// Synapse's: exponential moving averages of items and duration per batch.
type perf struct {
	totalItems  int64
	totalMillis float64
	avgItems    float64
	avgMillis   float64
}

const emaAlpha = 0.1

func (p *perf) record(items int, millis float64) {
	p.totalItems += int64(items)
	p.totalMillis += millis
	p.avgItems = emaAlpha*float64(items) + (1-emaAlpha)*p.avgItems
	p.avgMillis = emaAlpha*millis + (1-emaAlpha)*p.avgMillis
}

// rate is items per millisecond; ok is false before the first batch.
func (p *perf) rate() (float64, bool) {
	if p.totalItems == 0 {
		return 0, false
	}
	if p.avgMillis == 0 {
		return 0, true
	}
	return p.avgItems / p.avgMillis, true
}

// Tuning sizes and paces batches: the background_updates section of a
// homeserver config, with the same fields (a config.BackgroundUpdates
// converts to it). The zero Tuning means Synapse's defaults.
type Tuning struct {
	// DurationMS is the target duration of a batch.
	DurationMS int
	// SleepEnabled and SleepDurationMS are the pause before each batch
	// (see Runner.Sleep).
	SleepEnabled    bool
	SleepDurationMS int
	// MinBatchSize bounds the tuned size from below; DefaultBatchSize is
	// the first batch's size.
	MinBatchSize     int
	DefaultBatchSize int
}

// DefaultTuning is Synapse's defaults for the background_updates section.
func DefaultTuning() Tuning {
	return Tuning{DurationMS: 100, SleepEnabled: true, SleepDurationMS: 1000, MinBatchSize: 1, DefaultBatchSize: 100}
}

// Runner executes background updates on one physical database.
type Runner struct {
	DB       *db.DB
	Registry *Registry
	Env      Env
	// Tuning sizes batches; zero means Synapse's defaults.
	Tuning Tuning
	// Sleep pauses Tuning.SleepDurationMS before each batch (the homeserver
	// does, the CLI does not).
	Sleep bool
	// OnEvent receives progress events.
	OnEvent func(UpdateEvent)

	mu    sync.Mutex
	perfs map[string]*perf
}

func (r *Runner) tuning() Tuning {
	if r.Tuning.DurationMS == 0 {
		return DefaultTuning()
	}
	return r.Tuning
}

func (r *Runner) book() bookkeeping.Store { return bookkeeping.New(r.DB.Engine) }

func (r *Runner) emit(ev UpdateEvent) {
	if r.OnEvent != nil {
		r.OnEvent(ev)
	}
}

// Next picks the update the scheduler would run next: the first pending
// update (by ordering, then name) whose dependency is not pending.
func Next(pending []PendingUpdate) (PendingUpdate, error) {
	names := map[string]bool{}
	for _, u := range pending {
		names[u.Name] = true
	}
	for _, u := range pending {
		if u.DependsOn == "" || !names[u.DependsOn] {
			return u, nil
		}
	}
	return PendingUpdate{}, ErrDependencyCycle
}

// RunAll runs every pending update to completion, in scheduling order. It
// stops at the first failure, which it returns as an *UpdateError.
func (r *Runner) RunAll(ctx context.Context) error {
	for {
		pending, err := ReadUpdates(ctx, r.DB)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		next, err := Next(pending)
		if err != nil {
			return err
		}
		if err := r.run(ctx, next.Name); err != nil {
			return err
		}
	}
}

// RunOne runs the named update to completion. Its dependency must be done.
func (r *Runner) RunOne(ctx context.Context, name string) error {
	pending, err := ReadUpdates(ctx, r.DB)
	if err != nil {
		return err
	}
	names := map[string]PendingUpdate{}
	for _, u := range pending {
		names[u.Name] = u
	}
	u, ok := names[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUpdateNotPending, name)
	}
	if _, waits := names[u.DependsOn]; u.DependsOn != "" && waits {
		return &UpdateError{Update: name, Err: fmt.Errorf("it depends on %q, which is still pending: run that first", u.DependsOn)}
	}
	return r.run(ctx, name)
}

// run drives one update until it ends.
func (r *Runner) run(ctx context.Context, name string) error {
	h, ok := r.Registry.Lookup(name)
	if !ok {
		return &UpdateError{Update: name, Err: fmt.Errorf("%w %q in this version", ErrNoHandler, name)}
	}
	var left, total int64
	if h.Total != nil {
		prog, _ := r.progress(ctx, r.DB, name)
		left, total, _ = h.Total(ctx, r.DB, r.Env, prog)
	}
	r.emit(UpdateEvent{Type: "start", Update: name, Left: left, Total: total})
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		items, finished, size, millis, err := r.batch(ctx, name, h)
		if err != nil {
			ue := r.explain(ctx, name, h, err)
			r.emit(UpdateEvent{Type: "failed", Update: name, Error: ue.Err.Error()})
			return ue
		}
		done += int64(items)
		rate, _ := r.tunedRate(name)
		r.emit(UpdateEvent{Type: "batch", Update: name, Items: items, Done: done, Left: left, Total: total, BatchSize: size, Millis: millis, Rate: rate})
		if finished {
			r.emit(UpdateEvent{Type: "done", Update: name, Done: done, Total: total})
			return nil
		}
	}
}

// Step runs one batch of the next update; done reports that nothing is left.
// The homeserver calls it in a loop while serving.
func (r *Runner) Step(ctx context.Context) (done bool, err error) {
	pending, err := ReadUpdates(ctx, r.DB)
	if err != nil {
		return false, err
	}
	if len(pending) == 0 {
		return true, nil
	}
	next, err := Next(pending)
	if err != nil {
		return false, err
	}
	h, ok := r.Registry.Lookup(next.Name)
	if !ok {
		return false, &UpdateError{Update: next.Name, Err: fmt.Errorf("%w %q in this version", ErrNoHandler, next.Name)}
	}
	items, finished, size, millis, err := r.batch(ctx, next.Name, h)
	if err != nil {
		return false, r.explain(ctx, next.Name, h, err)
	}
	rate, _ := r.tunedRate(next.Name)
	r.emit(UpdateEvent{Type: "batch", Update: next.Name, Items: items, BatchSize: size, Millis: millis, Rate: rate})
	if finished {
		r.emit(UpdateEvent{Type: "done", Update: next.Name})
	}
	return false, nil
}

// Perf reports an update's performance in this process: items and
// milliseconds so far, and the tuned rate (ok false before a batch ran).
func (r *Runner) Perf(name string) (items int64, millis float64, rate float64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.perfLocked(name)
	rate, ok = p.rate()
	return p.totalItems, p.totalMillis, rate, ok
}

// record notes a batch's items and duration.
func (r *Runner) record(name string, items int, millis float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.perfLocked(name).record(items, millis)
}

// tunedRate is the update's measured rate.
func (r *Runner) tunedRate(name string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.perfLocked(name).rate()
}

func (r *Runner) perfLocked(name string) *perf {
	if r.perfs == nil {
		r.perfs = map[string]*perf{}
	}
	p, ok := r.perfs[name]
	if !ok {
		p = &perf{}
		r.perfs[name] = p
	}
	return p
}

// batchSize follows Synapse: the default size first, then the size that
// should take the target duration at the measured rate.
func (r *Runner) batchSize(name string) int {
	t := r.tuning()
	rate, ok := r.tunedRate(name)
	if !ok {
		return t.DefaultBatchSize
	}
	return max(int(float64(t.DurationMS)*rate), t.MinBatchSize)
}

func (r *Runner) progress(ctx context.Context, q db.Querier, name string) (json.RawMessage, error) {
	p, queued, err := r.book().Progress(ctx, q, name, false)
	if err == nil && !queued {
		return nil, fmt.Errorf("%w: %q", ErrUpdateNotPending, name)
	}
	return json.RawMessage(p), err
}

// batch runs one batch and records its performance.
func (r *Runner) batch(ctx context.Context, name string, h Handler) (items int, done bool, size int, millis float64, err error) {
	if r.Sleep {
		if d := r.tuning().SleepDurationMS; d > 0 {
			select {
			case <-ctx.Done():
				return 0, false, 0, 0, ctx.Err()
			case <-time.After(time.Duration(d) * time.Millisecond):
			}
		}
	}
	size = r.batchSize(name)
	t0 := time.Now()
	if h.Index != nil {
		err = r.buildIndex(ctx, name, *h.Index)
		items, done = 1, err == nil
	} else {
		items, done, err = r.runBatch(ctx, name, h, size)
	}
	millis = float64(time.Since(t0).Microseconds()) / 1000
	if err == nil {
		r.record(name, items, millis)
	}
	return items, done, size, millis, err
}

func (r *Runner) runBatch(ctx context.Context, name string, h Handler, size int) (items int, done bool, err error) {
	book := r.book()
	err = InTx(ctx, r.DB, func(tx *sql.Tx) error {
		// Lock the update's row: a second runner waits here and then sees
		// the progress this batch saved, so no batch runs twice.
		p, queued, err := book.Progress(ctx, tx, name, true)
		if err != nil || !queued {
			done = !queued
			return err
		}
		res, err := h.Batch(ctx, tx, r.Env, json.RawMessage(p), size)
		if err != nil {
			return err
		}
		items, done = res.Items, res.Done
		if res.Done {
			return book.Dequeue(ctx, tx, name)
		}
		data, err := json.Marshal(res.Progress)
		if err != nil {
			return err
		}
		return book.SaveProgress(ctx, tx, name, string(data))
	})
	return items, done, err
}

// buildIndex creates an index and ends its update. SQLite: in one
// transaction. PostgreSQL: CREATE INDEX CONCURRENTLY on a dedicated
// connection outside any transaction, after dropping a half-built index a
// killed run may have left; the update's row is deleted afterwards, and a
// valid index found on a re-run is kept rather than rebuilt.
func (r *Runner) buildIndex(ctx context.Context, name string, spec IndexSpec) error {
	if r.DB.Engine == db.SQLite {
		return InTx(ctx, r.DB, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, indexSQL(spec, "IF NOT EXISTS")); err != nil {
				return err
			}
			if spec.Replaces != "" {
				if _, err := tx.ExecContext(ctx, "DROP INDEX IF EXISTS "+spec.Replaces); err != nil {
					return err
				}
			}
			return r.book().Dequeue(ctx, tx, name)
		})
	}
	conn, err := r.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	key := updateLockKey(name)
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return err
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key) }()
	if _, queued, err := r.book().Progress(ctx, conn, name, false); err != nil || !queued {
		return err
	}
	var valid sql.NullBool
	err = conn.QueryRowContext(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace`, spec.Name).Scan(&valid)
	if err != nil && err != sql.ErrNoRows {
		return err
	}
	if !valid.Valid || !valid.Bool {
		if _, err := conn.ExecContext(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+spec.Name); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "SET statement_timeout = 0"); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, indexSQL(spec, "CONCURRENTLY")); err != nil {
			// A failed concurrent build leaves an invalid index behind: drop
			// it now rather than leave it to slow down writes.
			_, _ = conn.ExecContext(context.Background(), "DROP INDEX CONCURRENTLY IF EXISTS "+spec.Name)
			return err
		}
	}
	if spec.Replaces != "" {
		if _, err := conn.ExecContext(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+spec.Replaces); err != nil {
			return err
		}
	}
	if spec.ReplacesConstraint != "" {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", spec.Table, spec.ReplacesConstraint)); err != nil {
			return err
		}
	}
	return r.book().Dequeue(ctx, conn, name)
}

// indexSQL renders CREATE INDEX; how is "IF NOT EXISTS" or "CONCURRENTLY".
func indexSQL(s IndexSpec, how string) string {
	var b strings.Builder
	b.WriteString("CREATE ")
	if s.Unique {
		b.WriteString("UNIQUE ")
	}
	b.WriteString("INDEX ")
	if how == "CONCURRENTLY" {
		b.WriteString("CONCURRENTLY ")
	} else if how != "" {
		b.WriteString(how + " ")
	}
	fmt.Fprintf(&b, "%s ON %s (%s)", s.Name, s.Table, strings.Join(s.Columns, ", "))
	if s.Where != "" {
		b.WriteString(" WHERE " + s.Where)
	}
	return b.String()
}

// updateLockKey is an advisory lock key per update name (FNV-1a).
func updateLockKey(name string) int64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return int64(h >> 1)
}

// explain makes the UpdateError of a failed batch, with the handler's
// explanation when it has one.
func (r *Runner) explain(ctx context.Context, name string, h Handler, err error) *UpdateError {
	ue := &UpdateError{Update: name, Err: err}
	if h.Explain == nil || ctx.Err() != nil {
		return ue
	}
	if ex := h.Explain(ctx, r.DB, r.Env, err); ex != nil && ex != err {
		ue.Err, ue.hint = ex, fault.HintOf(ex)
	}
	return ue
}
