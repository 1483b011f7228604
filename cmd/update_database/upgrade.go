package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/offline"
	"hsops/internal/portstate"
	"hsops/schema"
	"hsops/schema/engine"
)

type upgradeOptions struct {
	*globals
	runBackground bool
	dryRun        bool
	target        int
	python        string
}

func runUpgrade(ctx context.Context, o *upgradeOptions) error {
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	if o.dryRun && o.runBackground {
		return cli.Usagef("--dry-run and --run-background-updates cannot be used together")
	}
	// One read-only look at every database decides between Synapse's
	// upgrade and the engine's, and plans the engine's.
	looks, err := inspect.All(ctx, cfg)
	if err != nil {
		return fault.InterruptCtx(ctx, err, "nothing was changed")
	}
	if py, ok := synapsePython(o, looks); ok {
		defer looks.Close()
		return runSynapseUpgrade(ctx, o, cfg, looks, py)
	}
	plans, err := planAll(ctx, o, cfg, looks)
	looks.Close()
	if err != nil {
		return fault.InterruptCtx(ctx, err, "nothing was changed")
	}
	// Deltas are not applied under a running homeserver (background
	// updates may run beside it).
	for _, p := range plans {
		if !o.dryRun && !p.plan.Empty() {
			if err := offline.RefuseInUse(cfg, p.dbc, "nothing was changed: run the same command again once it is stopped, then start it"); err != nil {
				return err
			}
		}
		if !o.dryRun && (!p.plan.Empty() || o.runBackground) {
			if err := offline.CheckWritable(ctx, p.dbc, true); err != nil {
				return err
			}
		}
	}
	for _, p := range plans {
		if err := upgradeOne(ctx, o, cfg, p); err != nil {
			return err
		}
	}
	return nil
}

// planned is one database's checked plan.
type planned struct {
	dbc  config.Database
	st   *schema.State
	opts schema.Options
	plan *schema.Plan
}

// planAll plans every database before the first is written: a refusal of
// the second leaves the first untouched too.
func planAll(ctx context.Context, o *upgradeOptions, cfg *config.Config, looks inspect.Looks) ([]*planned, error) {
	plans := make([]*planned, 0, len(looks))
	for _, l := range looks {
		p, err := planOne(ctx, o, cfg, l)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// planOne checks a database's server and plans its upgrade from its
// state, writing nothing. A Synapse database is refused, saying how to
// have Synapse's own upgrade run.
func planOne(ctx context.Context, o *upgradeOptions, cfg *config.Config, l inspect.Look) (*planned, error) {
	dbc, st := l.Config, l.State
	if l.DB != nil {
		if err := schema.Preflight(ctx, l.DB, st, dbc.AllowUnsafeLocale); err != nil {
			return nil, err
		}
		if err := portstate.Check(ctx, l.DB); err != nil {
			return nil, err
		}
	}
	opts := schema.Options{
		Target: o.target, Stores: dbc.DataStores, Worker: cfg.IsWorker(), ServerName: cfg.ServerName,
		AllowUnsafeLocale: dbc.AllowUnsafeLocale, Holder: "update_database",
	}
	plan, err := engine.Schema().Plan(st, inspect.EngineOf(dbc), opts)
	if err != nil && st.Kind == schema.KindSynapse {
		return nil, needPython(err)
	}
	if err != nil {
		return nil, err
	}
	return &planned{dbc: dbc, st: st, opts: opts, plan: plan}, nil
}

func upgradeOne(ctx context.Context, o *upgradeOptions, cfg *config.Config, p *planned) error {
	set := engine.Schema()
	dbc, st, opts, plan := p.dbc, p.st, p.opts, p.plan
	out := newReporter(o.globals)
	desc := inspect.Describe(dbc)
	if o.dryRun {
		if o.json {
			out.jsonl.Emit(planJSON(desc, plan))
			return nil
		}
		formatPlan(o.stdout, desc, plan)
		fmt.Fprintln(o.stdout, "nothing was changed (--dry-run)")
		return nil
	}
	if plan.Empty() {
		out.line("%s: %s", desc, plan.Note)
		out.emit(map[string]any{"event": "result", "database": desc, "version": st.Version, "applied": []string{}, "note": plan.Note})
		if !o.runBackground {
			return reportPending(ctx, o, dbc)
		}
	}
	d, err := db.Open(ctx, dbc, db.Options{Create: true, AppName: "hsops update_database"})
	if err != nil {
		return err
	}
	defer d.Close()
	if plan.Empty() {
		return runBackground(ctx, o.globals, d, cfg, "")
	}
	opts.Progress = out.schemaEvent
	res, err := set.Apply(ctx, d, opts)
	if err != nil {
		if res != nil && len(res.Applied) > 0 && !fault.IsInterrupted(err) {
			out.line("%s: applied %d deltas up to schema %d before the failure", desc, len(res.Applied), res.Version)
		}
		return err
	}
	out.schemaResult(desc, res)
	if o.runBackground {
		return runBackground(ctx, o.globals, d, cfg, "")
	}
	return reportPending(ctx, o, dbc)
}

// reportPending tells the operator about pending background updates.
func reportPending(ctx context.Context, o *upgradeOptions, dbc config.Database) error {
	ro, st, err := inspect.Inspect(ctx, dbc)
	if err != nil {
		return err
	}
	if ro != nil {
		ro.Close()
	}
	if n := len(st.Updates); n > 0 && !o.json {
		fmt.Fprintf(o.stdout, "%d background update(s) pending; to run them now:\n  update_database --database-config %s --run-background-updates\n", n, o.configArg())
	}
	return nil
}

// formatPlan prints a plan for people. Its output is stable (golden files).
func formatPlan(w io.Writer, desc string, p *schema.Plan) {
	fmt.Fprintf(w, "plan for %s (%s, %s):\n", desc, p.Engine, strings.Join(p.Stores, ", "))
	if p.Create {
		fmt.Fprintf(w, "  create the database from the schema %d snapshot (compat %d):\n", p.Snapshot, compatOf(p))
		for _, f := range p.SnapshotFiles {
			fmt.Fprintf(w, "    %s\n", f.Path)
		}
	} else {
		compat := "none"
		if p.State.HasCompat {
			compat = fmt.Sprint(p.State.Compat)
		}
		fmt.Fprintf(w, "  the database is at schema %d (compat %s)\n", p.State.Version, compat)
	}
	for _, s := range p.Steps {
		if len(s.Deltas) == 0 {
			fmt.Fprintf(w, "  schema %d (compat %d): no delta for %s\n", s.Version, s.Compat, p.Engine)
			continue
		}
		fmt.Fprintf(w, "  schema %d (compat %d):\n", s.Version, s.Compat)
		for _, d := range s.Deltas {
			kind := ""
			if d.Kind == schema.DeltaGo {
				kind = " (Go)"
			}
			fmt.Fprintf(w, "    %s%s\n", d.Path, kind)
		}
	}
	switch {
	case p.Empty():
		fmt.Fprintf(w, "  %s\n", p.Note)
	default:
		fmt.Fprintf(w, "  %d deltas in %d versions, each version in one transaction\n", p.DeltaCount(), len(p.Steps))
	}
}

func compatOf(p *schema.Plan) int {
	return engine.Schema().CompatFor(p.Snapshot)
}

func planJSON(desc string, p *schema.Plan) map[string]any {
	type step struct {
		Version int      `json:"version"`
		Compat  int      `json:"compat"`
		Deltas  []string `json:"deltas"`
	}
	steps := []step{}
	for _, s := range p.Steps {
		st := step{Version: s.Version, Compat: s.Compat, Deltas: []string{}}
		for _, d := range s.Deltas {
			st.Deltas = append(st.Deltas, d.Path)
		}
		steps = append(steps, st)
	}
	out := map[string]any{"event": "plan", "database": desc, "engine": p.Engine, "target": p.Target, "steps": steps, "dry_run": true}
	if p.Create {
		out["create_from_snapshot"] = p.Snapshot
	} else {
		out["from"] = p.State.Version
	}
	if p.Note != "" {
		out["note"] = p.Note
	}
	return out
}
