package synapse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/offline"
	"hsops/schema"
)

// UpgradeOptions control Upgrade.
type UpgradeOptions struct {
	// Python is the interpreter of the Synapse release (see ResolvePython).
	Python string
	// Config is the homeserver config; every database it names must be
	// Synapse's.
	Config *config.Config
	// Databases are Config's databases as the caller inspected them
	// (inspect.All), open until Upgrade returns (the caller closes them).
	Databases inspect.Looks
	// RunBackgroundUpdates runs the background updates to completion after
	// the schema upgrade.
	RunBackgroundUpdates bool
	// DryRun stops after the plan.
	DryRun bool
	// Holder names this process as the holder of the schema lock.
	Holder string
	// Verbose passes -v to update_synapse_database.
	Verbose bool
	// Log receives update_synapse_database's output (nil: kept only for
	// the failure's cause).
	Log io.Writer
	// AbortGrace is Options.AbortGrace.
	AbortGrace time.Duration
	// OnPlan receives the plan before anything is written.
	OnPlan func(*UpgradePlan)
	// OnEvent receives progress events. "update_start" and "update_batch"
	// carry Done, Total and ETAMillis when the update's work is known (see
	// Estimate).
	OnEvent func(Event)
}

// UpgradePlan is what an Upgrade will do.
type UpgradePlan struct {
	Release   *Release          `json:"release"`
	Databases []PlannedDatabase `json:"databases"`
}

// PlannedDatabase is one database's part of the plan.
type PlannedDatabase struct {
	Label  string `json:"label"`
	Desc   string `json:"database"`
	Schema int    `json:"schema_version"`
	Compat int    `json:"compat_version"`
	// Deltas are the delta files of the release not yet applied, "<V>/<file>"
	// ([] when the release's schema directory cannot be read: Synapse still
	// decides).
	Deltas []string `json:"deltas"`
	// Pending are the queued background updates.
	Pending []schema.PendingUpdate `json:"pending_updates"`
}

// Empty reports whether there is nothing to run: the schema is the
// release's, and no background update is to run.
func (p *UpgradePlan) Empty(runBackground bool) bool {
	for _, d := range p.Databases {
		if d.Schema < p.Release.Schema || len(d.Deltas) > 0 {
			return false
		}
		if runBackground && len(d.Pending) > 0 {
			return false
		}
	}
	return true
}

// UpgradeResult is what Upgrade did.
type UpgradeResult struct {
	Plan *UpgradePlan `json:"plan"`
	// Run is nil when nothing ran (an empty plan, or DryRun).
	Run *Result `json:"run,omitempty"`
}

// Upgrade runs a real Synapse's update_synapse_database on the databases of
// a Synapse deployment, with the operator's guards around it: the plan
// first (the release at Python, each database's version, the deltas to
// apply), the refusal under a running homeserver, the schema lock of each
// database (a second upgrader is refused, naming the holder), then the run
// with progress events and Synapse's hang after a failing background update
// detected and stopped. A failed delta or update returns the result with its
// *Failure.
func Upgrade(ctx context.Context, o UpgradeOptions) (*UpgradeResult, error) {
	rel, err := Probe(ctx, o.Python)
	if err != nil {
		return nil, err
	}
	plan, err := planUpgrade(rel, o.Databases)
	if err != nil {
		return nil, err
	}
	if o.OnPlan != nil {
		o.OnPlan(plan)
	}
	res := &UpgradeResult{Plan: plan}
	if o.DryRun || plan.Empty(o.RunBackgroundUpdates) {
		return res, nil
	}
	release, err := guard(ctx, o)
	if err != nil {
		return nil, err
	}
	defer release()
	// update_synapse_database reads one config file, in a private
	// directory (it holds the config's secrets).
	dir, err := os.MkdirTemp("", "hsops-synapse-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "homeserver.json")
	if err := WriteConfig(path, o.Config, absoluteSQLitePaths(o.Config)); err != nil {
		return nil, err
	}
	var dbs []*db.DB
	for _, l := range o.Databases {
		dbs = append(dbs, l.DB)
	}
	est := &estimator{ctx: ctx, dbs: dbs, out: o.OnEvent, work: map[string]*work{}}
	run, err := Run(ctx, Options{
		Python: o.Python, Config: path, RunBackgroundUpdates: o.RunBackgroundUpdates, Verbose: o.Verbose,
		Databases: dbs, AbortGrace: o.AbortGrace, Log: o.Log, OnEvent: est.event,
	})
	res.Run = run
	var f *Failure
	if err != nil && !errors.As(err, &f) {
		return res, fault.InterruptCtx(ctx, err, "update_synapse_database was stopped: each delta and each batch commits whole; run the same command again to go on")
	}
	return res, err
}

// planUpgrade checks that every database is Synapse's, existing and not
// too new for the release, and lists what the release will do to it.
func planUpgrade(rel *Release, looks inspect.Looks) (*UpgradePlan, error) {
	plan := &UpgradePlan{Release: rel}
	for _, l := range looks {
		dbc, st := l.Config, l.State
		if l.DB == nil {
			return nil, fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
		}
		if st.Kind != schema.KindSynapse {
			return nil, fault.Errorf(fault.NotOurs, "run update_database without --python: hsops upgrades its own databases",
				"%s is not a Synapse database (%s): --python upgrades Synapse's databases", inspect.Describe(dbc), st.Kind)
		}
		if st.HasCompat && st.Compat > rel.Schema {
			return nil, fault.Errorf(fault.Version, "use a Synapse release at least as new as the one that last upgraded it",
				"%s is at schema %d (compat %d): too new for Synapse %s at %s (schema %d)", inspect.Describe(dbc), st.Version, st.Compat, rel.Version, rel.Python, rel.Schema)
		}
		plan.Databases = append(plan.Databases, PlannedDatabase{
			Label: dbc.Label, Desc: inspect.Describe(dbc), Schema: st.Version, Compat: st.Compat,
			Deltas: pendingDeltas(rel, st, dbc), Pending: orNone(st.Updates),
		})
	}
	return plan, nil
}

// guard refuses a homeserver running on a database and a database this
// user cannot write, then takes every database's schema lock, which
// release gives back.
func guard(ctx context.Context, o UpgradeOptions) (release func(), err error) {
	for _, dbc := range o.Config.Databases {
		if err := offline.RefuseInUse(o.Config, dbc, "nothing was changed: stop it (synctl stop <config>), run this again, then start it"); err != nil {
			return nil, err
		}
		if err := offline.CheckWritable(ctx, dbc, true); err != nil {
			return nil, err
		}
	}
	holder := o.Holder
	if holder == "" {
		holder = "update_database --python"
	}
	var locks []*schema.Lock
	release = func() {
		for _, l := range locks {
			l.Release()
		}
	}
	for _, l := range o.Databases {
		lock, err := schema.AcquireLock(ctx, l.DB, holder)
		if err != nil {
			release()
			return nil, err
		}
		locks = append(locks, lock)
	}
	return release, nil
}

// absoluteSQLitePaths is the config edit that makes each SQLite path
// absolute (update_synapse_database runs in another directory).
func absoluteSQLitePaths(cfg *config.Config) ConfigEdit {
	edit := ConfigEdit{Args: map[string]map[string]any{}}
	for _, dbc := range cfg.Databases {
		if dbc.IsSQLite() {
			if p, err := filepath.Abs(dbc.SQLitePath()); err == nil {
				edit.Args[dbc.Label] = map[string]any{"database": p}
			}
		}
	}
	return edit
}

func orNone(us []schema.PendingUpdate) []schema.PendingUpdate {
	if us == nil {
		return []schema.PendingUpdate{}
	}
	return us
}

// pendingDeltas lists the release's delta files a database has not applied,
// as Synapse's prepare_database picks them: versions from the database's
// (if its deltas are under way) or the next, the common directory and
// those of the database's data stores, *.sql, *.sql.<engine> and *.py.
func pendingDeltas(rel *Release, st *schema.State, dbc config.Database) []string {
	out := []string{}
	if rel.SchemaDir == "" {
		return out
	}
	engine := "sqlite"
	if dbc.IsPostgres() {
		engine = "postgres"
	}
	start := st.Version + 1
	if st.Upgraded {
		start = st.Version
	}
	stores := append([]string{"common"}, dbc.DataStores...)
	if len(dbc.DataStores) == 0 {
		stores = append(stores, "main", "state")
	}
	for v := start; v <= rel.Schema; v++ {
		var names []string
		for _, s := range stores {
			entries, err := os.ReadDir(filepath.Join(rel.SchemaDir, s, "delta", strconv.Itoa(v)))
			if err != nil {
				continue
			}
			for _, e := range entries {
				n := e.Name()
				if strings.HasSuffix(n, ".sql") || strings.HasSuffix(n, ".sql."+engine) || strings.HasSuffix(n, ".py") {
					names = append(names, n)
				}
			}
		}
		slices.Sort(names)
		for _, n := range names {
			key := fmt.Sprintf("%d/%s", v, n)
			if !st.IsApplied(key) {
				out = append(out, key)
			}
		}
	}
	return out
}

// work is a running update's known work.
type work struct {
	total, done int64
	// initial is what was done before this run.
	initial  int64
	known    bool
	start    time.Time
	measured time.Time
	// finished: its row was gone when measured (later batch lines add
	// nothing).
	finished bool
}

// estimator adds the work done, the total and an ETA to the run's events.
// An update's table is counted when it starts; after that, the batches'
// log lines add their items, and each change of its progress_json that the
// run's poll of background_updates reports ("update_progress") sets how
// far it is (the rows left counted at most once a second).
type estimator struct {
	ctx  context.Context
	dbs  []*db.DB
	out  func(Event)
	work map[string]*work
}

func (e *estimator) event(ev Event) {
	key := ev.Database + "\x00" + ev.Update
	w := e.work[key]
	switch ev.Type {
	case "update_start":
		w = &work{start: time.Now()}
		e.work[key] = w
		e.measure(ev, w)
		w.initial = w.done
		e.fill(&ev, w)
	case "update_progress":
		if w != nil {
			if w.known && !w.finished && time.Since(w.measured) >= time.Second {
				e.remeasure(ev, w)
			}
			e.fill(&ev, w)
		}
	case "update_batch":
		if w != nil {
			if !w.finished {
				w.done += ev.Items
			}
			e.fill(&ev, w)
		}
	case "update_done":
		if w != nil {
			if w.known && w.done < w.total {
				w.done = w.total
			}
			e.fill(&ev, w)
			ev.ETAMillis = 0
		}
	}
	if e.out != nil {
		e.out(ev)
	}
}

// measure counts an update's work from its progress_json (the run's last
// poll of it, else its row) and its table.
func (e *estimator) measure(ev Event, w *work) {
	d := e.db(ev.Database)
	if d == nil {
		return
	}
	progress := ev.Progress
	if progress == "" {
		us, err := schema.ReadUpdates(e.ctx, d)
		if err != nil {
			return
		}
		i := slices.IndexFunc(us, func(u schema.PendingUpdate) bool { return u.Name == ev.Update })
		if i < 0 {
			// Its row is gone: the update finished before its log lines
			// were read. All of its work is done.
			if _, total, ok := Estimate(e.ctx, d, ev.Update, "{}"); ok {
				w.known, w.total, w.done, w.measured = true, total, total, time.Now()
				w.finished = true
			}
			return
		}
		progress = us[i].Progress
	}
	if left, total, ok := Estimate(e.ctx, d, ev.Update, progress); ok {
		w.known, w.total, w.done, w.measured = true, total, total-left, time.Now()
	}
}

// remeasure sets how far an update is from the progress_json the run's
// poll reported; the total counted at its start stands.
func (e *estimator) remeasure(ev Event, w *work) {
	d := e.db(ev.Database)
	if d == nil {
		return
	}
	if left, ok := Remaining(e.ctx, d, ev.Update, ev.Progress); ok {
		w.done, w.measured = w.total-left, time.Now()
	}
}

// fill sets an event's Done, Total and ETA (at the rate so far).
func (e *estimator) fill(ev *Event, w *work) {
	ev.Done = w.done
	if !w.known {
		return
	}
	if w.done > w.total {
		// A batch counted both from the table and from its log line:
		// the table is right (the next measure corrects the total).
		w.done = w.total
	}
	ev.Total = w.total
	elapsed := time.Since(w.start)
	if w.done > 0 && elapsed > 0 && ev.Type == "update_batch" {
		// done counts what was done before this run too: the rate is of
		// this run's batches only.
		ran := w.done - w.initial
		if ran > 0 {
			ev.ETAMillis = int64(float64(w.total-w.done) * float64(elapsed.Milliseconds()) / float64(ran))
		}
	}
}

func (e *estimator) db(label string) *db.DB {
	for _, d := range e.dbs {
		if d.Label == label {
			return d
		}
	}
	return nil
}
