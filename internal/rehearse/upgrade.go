package rehearse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/repair"
	"hsops/internal/synapse"
	"hsops/internal/upgradecheck"
	"hsops/schema"
	"hsops/schema/engine"
)

// upgradeEngine runs the engine's upgrade on the copies for real: every
// database's deltas (the blocking phase: the engine applies them at
// start-up, before it serves), then their background updates (the
// background phase: the engine runs them while it serves), each step timed
// and measured.
func (r *rehearsal) upgradeEngine(ctx context.Context) error {
	set := engine.Schema()
	r.emit(Event{Type: "phase", Name: "schema"})
	t0 := time.Now()
	for _, s := range r.sources {
		failed, err := r.applyDeltas(ctx, set, s)
		if err != nil {
			return err
		}
		if failed {
			r.report.BlockingMillis = time.Since(t0).Milliseconds()
			return nil
		}
	}
	r.report.BlockingMillis = time.Since(t0).Milliseconds()

	r.emit(Event{Type: "phase", Name: "background"})
	t1 := time.Now()
	for _, s := range r.sources {
		if err := r.runUpdates(ctx, set, s); err != nil {
			return err
		}
		if r.report.Failure != nil {
			break
		}
	}
	r.report.BackgroundMillis = time.Since(t1).Milliseconds()
	r.report.PacedMillis = paced(r.report.BackgroundMillis, r.report.Batches, r.o.Config.BackgroundUpdates)
	return nil
}

// applyDeltas applies the engine's deltas to one copy, each timed, and
// reports whether a delta failed (recorded as the rehearsal's failure).
func (r *rehearsal) applyDeltas(ctx context.Context, set *schema.Set, s *source) (failed bool, err error) {
	label := s.dbc.Label
	opts := schema.Options{Target: r.target.schema, Stores: s.dbc.DataStores, ServerName: r.o.Config.ServerName,
		Holder: "update_database rehearse", CountRows: true,
		Progress: func(ev schema.Event) {
			if ev.Type != "delta" {
				return
			}
			st := Step{Name: fmt.Sprintf("%d/%s", ev.Version, ev.File), Millis: ev.Millis, Rows: ev.Rows, Ran: true, OK: true}
			s.rep.Deltas = append(s.rep.Deltas, st)
			r.emit(Event{Type: "delta", Database: label, Name: st.Name, Millis: st.Millis, Rows: st.Rows})
		}}
	started := time.Now()
	_, err = set.Apply(ctx, s.copy, opts)
	if err == nil {
		return false, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	var de *schema.DeltaError
	if !errors.As(err, &de) {
		return false, err
	}
	r.deltaFailed(s, de, time.Since(started))
	return true, nil
}

// deltaFailed records a failed delta. The version's deltas that reported
// success were rolled back with it: the version is one transaction.
func (r *rehearsal) deltaFailed(s *source, de *schema.DeltaError, took time.Duration) {
	name := fmt.Sprintf("%d/%s", de.Version, de.File)
	for i := range s.rep.Deltas {
		if strings.HasPrefix(s.rep.Deltas[i].Name, fmt.Sprintf("%d/", de.Version)) {
			s.rep.Deltas[i].OK = false
			s.rep.Deltas[i].Error = "rolled back with schema version " + fmt.Sprint(de.Version)
		}
	}
	s.rep.Deltas = append(s.rep.Deltas, Step{Name: name, Millis: took.Milliseconds(), Rows: -1, Ran: true, Error: de.Err.Error()})
	r.fail(&Failure{Database: s.dbc.Label, Phase: "schema", Step: name, Cause: de.Err.Error(), Fix: de.Hint()})
}

// runUpdates runs one copy's background updates, each timed, and lists
// those a failure left as not run.
func (r *rehearsal) runUpdates(ctx context.Context, set *schema.Set, s *source) error {
	steps := &updateSteps{r: r, s: s}
	runner := &schema.Runner{DB: s.copy, Registry: set.Updates, Env: schema.Env{Engine: s.copy.Engine, ServerName: r.o.Config.ServerName},
		Tuning: schema.Tuning(r.o.Config.BackgroundUpdates), OnEvent: steps.onEvent}
	// Note the pending updates first: those a failure leaves are listed as
	// not run.
	pending, err := schema.ReadUpdates(ctx, s.copy)
	if err != nil {
		return err
	}
	if err := runner.RunAll(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *schema.UpdateError
		if !errors.As(err, &ue) {
			return err
		}
		cause := ue.Err.Error()
		if steps.cur == nil || steps.cur.Name != ue.Update {
			s.rep.Updates = append(s.rep.Updates, Step{Name: ue.Update, Rows: -1, Ran: true, Error: cause})
		}
		r.fail(&Failure{Database: s.dbc.Label, Phase: "background", Step: ue.Update, Cause: cause, Fix: updateFix(ue)})
	}
	left, _ := schema.ReadUpdates(ctx, s.copy)
	notRun(s.rep, append(pending, left...), "an earlier update failed")
	return nil
}

// notRun adds the updates of pending that the report does not list yet,
// as not run, for why.
func notRun(rep *DatabaseReport, pending []schema.PendingUpdate, why string) {
	listed := map[string]bool{}
	for _, u := range rep.Updates {
		listed[u.Name] = true
	}
	for _, u := range pending {
		if !listed[u.Name] {
			listed[u.Name] = true
			rep.Updates = append(rep.Updates, Step{Name: u.Name, Millis: -1, Rows: -1, Error: why})
		}
	}
}

// updateSteps records one copy's background updates from the runner's
// events: each update a step, timed from its start.
type updateSteps struct {
	r     *rehearsal
	s     *source
	cur   *Step
	start time.Time
}

func (u *updateSteps) onEvent(ev schema.UpdateEvent) {
	label := u.s.dbc.Label
	switch ev.Type {
	case "start":
		u.s.rep.Updates = append(u.s.rep.Updates, Step{Name: ev.Update, Ran: true})
		u.cur = &u.s.rep.Updates[len(u.s.rep.Updates)-1]
		u.start = time.Now()
		u.r.emit(Event{Type: "update_start", Database: label, Name: ev.Update, Total: ev.Left})
	case "batch":
		if u.cur != nil {
			u.cur.Rows += int64(ev.Items)
			u.cur.Batches++
		}
		u.r.report.Batches++
		u.r.emit(Event{Type: "update_batch", Database: label, Name: ev.Update, Rows: int64(ev.Items), Done: ev.Done, Total: ev.Left})
	case "done", "failed":
		if u.cur == nil {
			return
		}
		u.cur.Millis = time.Since(u.start).Milliseconds()
		u.cur.OK = ev.Type == "done"
		u.cur.Error = ev.Error
		typ := "update_done"
		if !u.cur.OK {
			typ = "update_failed"
		}
		u.r.emit(Event{Type: typ, Database: label, Name: ev.Update, Rows: u.cur.Rows, Millis: u.cur.Millis, Message: ev.Error})
	}
}

// updateFix is the fix of a failed background update: the repair for
// duplicated edges, else what the update's error says.
func updateFix(ue *schema.UpdateError) string {
	var dup *repair.DuplicateEdgesError
	if errors.As(ue, &dup) {
		return repair.RepairEdgesCommand
	}
	return ue.Hint()
}

// paced estimates the background phase at the homeserver's pace: the
// same batches (sized for the same target duration) with its sleep before
// each.
func paced(flat int64, batches int, t config.BackgroundUpdates) int64 {
	if t.DurationMS == 0 {
		t = config.DefaultBackgroundUpdates()
	}
	if !t.SleepEnabled {
		return flat
	}
	return flat + int64(batches)*int64(t.SleepDurationMS)
}

// upgradeSynapse runs the Synapse release's update_synapse_database on the
// copies, with --run-background-updates.
func (r *rehearsal) upgradeSynapse(ctx context.Context) error {
	// The config holds secrets: a private directory, removed at the end.
	dir, err := os.MkdirTemp("", "hsops-rehearse-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "homeserver.json")
	if err := synapse.WriteConfig(path, r.o.Config, r.copiesConfig()); err != nil {
		return err
	}
	var dbs []*db.DB
	for _, s := range r.sources {
		dbs = append(dbs, s.copy)
	}
	r.emit(Event{Type: "phase", Name: "schema"})
	res, err := synapse.Run(ctx, synapse.Options{
		Python: r.o.Python, Config: path, RunBackgroundUpdates: true, Databases: dbs, Dir: dir,
		AbortGrace: r.o.AbortGrace, Log: r.o.SynapseLog, OnEvent: r.synapseEvents(),
	})
	var f *synapse.Failure
	if err != nil && !errors.As(err, &f) {
		return err
	}
	r.report.BlockingMillis = res.SchemaMillis
	r.report.BackgroundMillis = res.BackgroundMillis
	r.report.Batches = res.Batches
	r.report.PacedMillis = paced(res.BackgroundMillis, res.Batches, r.o.Config.BackgroundUpdates)
	for _, s := range r.sources {
		synapseSteps(s, res, f)
	}
	if f != nil {
		r.synapseFailed(f)
	}
	return nil
}

// copiesConfig is the edit of the operator's config that points Synapse at
// the copies.
func (r *rehearsal) copiesConfig() synapse.ConfigEdit {
	edit := synapse.ConfigEdit{Args: map[string]map[string]any{}, Set: map[string]any{"report_stats": false}}
	for _, s := range r.sources {
		if s.dbc.IsSQLite() {
			edit.Args[s.dbc.Label] = map[string]any{"database": s.scratch}
		} else {
			edit.Args[s.dbc.Label] = map[string]any{"database": nil, "dbname": s.scratch}
		}
	}
	return edit
}

// synapseEvents passes update_synapse_database's events on as the
// rehearsal's.
func (r *rehearsal) synapseEvents() func(synapse.Event) {
	inBackground := false
	return func(ev synapse.Event) {
		switch ev.Type {
		case "delta":
			r.emit(Event{Type: "delta", Database: ev.Database, Name: ev.Delta})
		case "schema_done":
			inBackground = true
			r.emit(Event{Type: "phase", Name: "background"})
		case "update_start":
			if !inBackground {
				inBackground = true
				r.emit(Event{Type: "phase", Name: "background"})
			}
			r.emit(Event{Type: "update_start", Database: ev.Database, Name: ev.Update})
		case "update_batch":
			r.emit(Event{Type: "update_batch", Database: ev.Database, Name: ev.Update, Rows: ev.Items})
		case "update_done":
			r.emit(Event{Type: "update_done", Database: ev.Database, Name: ev.Update, Rows: ev.Items, Millis: ev.Millis})
		case "update_error":
			r.emit(Event{Type: "note", Database: ev.Database, Name: ev.Update, Message: "attempt failed: " + ev.Error})
		case "aborted":
			r.emit(Event{Type: "update_failed", Database: ev.Database, Name: ev.Update, Message: ev.Error})
		case "stopping":
			r.emit(Event{Type: "note", Message: "stopping update_synapse_database: " + ev.Error})
		}
	}
}

// synapseSteps records one copy's deltas and background updates from
// update_synapse_database's result (f is its failure, or nil): the updates
// still pending at the end as not run.
func synapseSteps(s *source, res *synapse.Result, f *synapse.Failure) {
	for _, d := range res.Deltas {
		if d.Database != "" && d.Database != s.dbc.Label {
			continue
		}
		st := Step{Name: d.Key, Millis: d.Millis, Rows: -1, Ran: true, OK: d.Applied}
		if !d.Applied && f != nil {
			st.Error = f.Cause
		}
		s.rep.Deltas = append(s.rep.Deltas, st)
	}
	for _, u := range res.Updates {
		if u.Database != s.dbc.Label {
			continue
		}
		st := Step{Name: u.Name, Millis: u.Millis, Rows: u.Items, Batches: u.Batches, Ran: true, OK: u.Done, Error: u.Error}
		if !u.Done {
			st.Millis = -1
		}
		s.rep.Updates = append(s.rep.Updates, st)
	}
	why := "update_synapse_database did not start it"
	if f != nil {
		why = "an earlier update failed"
	}
	for _, after := range res.After {
		if after.Label == s.dbc.Label {
			notRun(s.rep, after.Pending, why)
		}
	}
}

// synapseFailed records update_synapse_database's failure.
func (r *rehearsal) synapseFailed(f *synapse.Failure) {
	if f.Stopped {
		r.note(fmt.Sprintf("Synapse logged \"5 back-to-back background update failures; aborting.\" and kept running with nothing to do (a known quirk of update_synapse_database): it was stopped after %s without progress", r.abortGrace()))
	}
	step := f.Delta
	if f.Phase == "background" {
		step = f.Update
	}
	if step == "" {
		step = "update_synapse_database"
	}
	r.fail(&Failure{Database: f.Database, Phase: f.Phase, Step: step, Cause: f.Cause, Fix: f.Fix})
}

func (r *rehearsal) abortGrace() time.Duration {
	if r.o.AbortGrace > 0 {
		return r.o.AbortGrace
	}
	return 2 * time.Second
}

// check runs upgrade-check's database checks on an upgraded copy. A
// blocker fails the rehearsal.
func (r *rehearsal) check(ctx context.Context, s *source) error {
	st, err := schema.ReadState(ctx, s.copy, s.copy)
	if err != nil {
		return err
	}
	d := &upgradecheck.Deployment{Config: r.o.Config, ConfigArg: r.o.ConfigArg, DB: s.copy, State: st}
	s.rep.Checks = upgradecheck.DatabaseChecks(ctx, d, r.target.release)
	for _, f := range s.rep.Checks {
		if f.Status == upgradecheck.Blocker {
			r.fail(&Failure{Database: s.dbc.Label, Phase: "checks", Step: f.Note.Title, Cause: f.Detail, Fix: f.Command})
		}
	}
	return nil
}
