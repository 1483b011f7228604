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
	cfg := o.Config
	plan := &UpgradePlan{Release: rel}
	var dbs []*db.DB
	defer func() {
		for _, d := range dbs {
			d.Close()
		}
	}()
	for _, dbc := range cfg.Databases {
		d, st, err := inspect.InspectExisting(ctx, dbc)
		if err != nil {
			return nil, err
		}
		dbs = append(dbs, d)
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
	if o.OnPlan != nil {
		o.OnPlan(plan)
	}
	res := &UpgradeResult{Plan: plan}
	if o.DryRun || plan.Empty(o.RunBackgroundUpdates) {
		return res, nil
	}
	for _, dbc := range cfg.Databases {
		if err := offline.RefuseInUse(cfg, dbc, "nothing was changed: stop it (synctl stop <config>), run this again, then start it"); err != nil {
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
	for _, d := range dbs {
		lock, err := schema.AcquireLock(ctx, d, holder)
		if err != nil {
			return nil, err
		}
		defer lock.Release()
	}
	// update_synapse_database reads one config file: the merged config,
	// with each SQLite path made absolute, in a private directory (it holds
	// the config's secrets).
	dir, err := os.MkdirTemp("", "hsops-synapse-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	edit := ConfigEdit{Args: map[string]map[string]any{}}
	for _, dbc := range cfg.Databases {
		if dbc.IsSQLite() {
			if p, err := filepath.Abs(dbc.SQLitePath()); err == nil {
				edit.Args[dbc.Label] = map[string]any{"database": p}
			}
		}
	}
	path := filepath.Join(dir, "homeserver.json")
	if err := WriteConfig(path, cfg, edit); err != nil {
		return nil, err
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
type estimator struct {
	ctx  context.Context
	dbs  []*db.DB
	out  func(Event)
	work map[string]*work
}

func (e *estimator) event(ev Event) {
	key := ev.Database + "\x00" + ev.Update
	switch ev.Type {
	case "update_start":
		w := &work{start: time.Now()}
		e.work[key] = w
		e.measure(ev, w)
		w.initial = w.done
		e.fill(&ev, w)
	case "update_batch":
		if w := e.work[key]; w != nil && w.finished {
			e.fill(&ev, w)
		} else if w != nil {
			// The batch is committed when Synapse logs it: the table
			// and progress_json say how far it is (read at most once a
			// second; in between, the batches' items are added).
			if !w.known || time.Since(w.measured) >= time.Second {
				w.done += ev.Items
				e.measure(ev, w)
			} else {
				w.done += ev.Items
			}
			e.fill(&ev, w)
		}
	case "update_done":
		if w := e.work[key]; w != nil {
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

// measure estimates an update's work from its progress_json and its table.
func (e *estimator) measure(ev Event, w *work) {
	d := e.db(ev.Database)
	if d == nil {
		return
	}
	us, err := schema.ReadUpdates(e.ctx, d)
	if err != nil {
		return
	}
	for _, u := range us {
		if u.Name != ev.Update {
			continue
		}
		if left, total, ok := Estimate(e.ctx, d, ev.Update, u.Progress); ok {
			w.known, w.total, w.done, w.measured = true, total, total-left, time.Now()
		}
		return
	}
	// Its row is gone: the update finished before its log lines were
	// read. All of its work is done.
	if _, total, ok := Estimate(e.ctx, d, ev.Update, "{}"); ok {
		w.known, w.total, w.done, w.measured = true, total, total, time.Now()
		w.finished = true
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
