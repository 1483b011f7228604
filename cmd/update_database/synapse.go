package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/plural"
	"hsops/internal/synapse"
	"hsops/schema"
)

// synapsePython is the Python to upgrade the config's databases with: the
// one --python, SYNAPSE_PYTHON or PATH names when a database is Synapse's
// (--python always). ok is false for an hsops engine upgrade.
func synapsePython(o *upgradeOptions, looks inspect.Looks) (synapse.Python, bool) {
	if o.python != "" {
		return synapse.ResolvePython(o.python), true
	}
	if !looks.Any(schema.KindSynapse) {
		return synapse.Python{}, false
	}
	py := synapse.ResolvePython("")
	return py, py.Path != ""
}

// needPython adds to the engine's refusal of a Synapse database how to
// have Synapse's own upgrade run.
func needPython(err error) error {
	return fault.Wrap(fault.NotOurs, err, "nothing was changed: to run Synapse's own upgrade with hsops' guards and progress, name its Python:\n"+
		"update_database --database-config <config> --python /opt/venvs/matrix-synapse/bin/python [--run-background-updates]\n"+
		"(or set "+synapse.PythonEnv+", or put the synapse installation on PATH)")
}

// runSynapseUpgrade runs the Synapse release at py on a Synapse deployment.
func runSynapseUpgrade(ctx context.Context, o *upgradeOptions, cfg *config.Config, looks inspect.Looks, py synapse.Python) error {
	if o.target != 0 {
		return cli.Usagef("--to-version is for hsops engine databases: with --python, the Synapse release at %s decides the schema version", py.Path)
	}
	out := &synapseReporter{g: o.globals, r: newReporter(o.globals), from: py.From}
	opts := synapse.UpgradeOptions{
		Python: py.Path, Config: cfg, Databases: looks, RunBackgroundUpdates: o.runBackground, DryRun: o.dryRun,
		Holder: "update_database --python", Verbose: o.verbose,
		OnPlan: out.plan, OnEvent: out.event,
	}
	if o.verbose && !o.json {
		opts.Log = prefixWriter{w: o.stderr, prefix: "synapse: "}
	}
	res, err := synapse.Upgrade(ctx, opts)
	out.finishBar()
	if res == nil {
		return err
	}
	out.result(res, o.dryRun, o.runBackground, o.configArg())
	return err
}

// synapseReporter shows a Synapse upgrade: JSON lines with --json, a bar
// per background update on a terminal, else lines.
type synapseReporter struct {
	g    *globals
	r    *reporter
	from string

	bar  *progressbar.ProgressBar
	last map[string]time.Time
	// done are the updates whose end was shown (a late batch line of
	// theirs is not).
	done map[string]bool
}

func (s *synapseReporter) plan(p *synapse.UpgradePlan) {
	rel := p.Release
	if s.g.json {
		s.r.jsonl.Emit(map[string]any{"event": "plan", "release": rel, "python_from": s.from, "databases": p.Databases})
		return
	}
	w := s.g.stdout
	fmt.Fprintf(w, "Synapse %s at %s (from %s): schema %d, compat %d\n", rel.Version, rel.Python, s.from, rel.Schema, rel.Compat)
	for _, d := range p.Databases {
		fmt.Fprintf(w, "plan for %s (Synapse database): schema %d (compat %d) -> %d\n", d.Desc, d.Schema, d.Compat, max(d.Schema, rel.Schema))
		switch {
		case len(d.Deltas) > 0:
			fmt.Fprintf(w, "  %d delta(s) to apply (the homeserver must stay stopped until they are done):\n", len(d.Deltas))
			for _, k := range d.Deltas {
				fmt.Fprintf(w, "    %s\n", k)
			}
		case d.Schema < rel.Schema:
			fmt.Fprintf(w, "  schema versions %d to %d to apply (Synapse decides their deltas)\n", d.Schema+1, rel.Schema)
		default:
			fmt.Fprintln(w, "  the schema is up to date")
		}
		if n := len(d.Pending); n > 0 {
			fmt.Fprintf(w, "  %d background update(s) queued\n", n)
		}
	}
}

func (s *synapseReporter) event(ev synapse.Event) {
	if s.g.json {
		s.r.jsonl.Emit(ev)
		return
	}
	w := s.g.stdout
	switch ev.Type {
	case "delta":
		if s.g.verbose {
			fmt.Fprintf(w, "  applying %s\n", ev.Delta)
		}
	case "schema_done":
		fmt.Fprintf(w, "schema up to date after %s\n", ms(ev.Millis))
	case "update_start":
		s.finishBar()
		if s.last == nil {
			s.last = map[string]time.Time{}
		}
		if cli.IsTerminal(s.g.stderr) {
			total := ev.Total
			if total <= 0 {
				total = -1
			}
			s.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(s.g.stderr), progressbar.OptionSetDescription(ev.Update),
				progressbar.OptionShowCount(), progressbar.OptionSetItsString("items"), progressbar.OptionShowIts(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
			_ = s.bar.Set64(ev.Done)
		}
		fmt.Fprintf(w, "background update %s: started%s\n", ev.Update, workOf(ev))
	case "update_batch":
		if s.done[ev.Update] {
			return
		}
		if s.bar != nil {
			if ev.Total > s.bar.GetMax64() {
				s.bar.ChangeMax64(ev.Total)
			}
			_ = s.bar.Set64(ev.Done)
			return
		}
		// Without a terminal: the first batch, then a line every 5 s.
		key := ev.Update
		if s.last == nil {
			s.last = map[string]time.Time{}
		}
		if t, seen := s.last[key]; seen && time.Since(t) < 5*time.Second {
			return
		}
		s.last[key] = time.Now()
		fmt.Fprintf(w, "  %s: %s\n", ev.Update, strings.TrimPrefix(workOf(ev), ", "))
	case "update_error":
		s.finishBar()
		fmt.Fprintf(w, "  %s: attempt failed: %s\n", ev.Update, ev.Error)
	case "update_done":
		s.finishBar()
		if s.done == nil {
			s.done = map[string]bool{}
		}
		s.done[ev.Update] = true
		items := ""
		if ev.Items > 0 {
			items = " (" + plural.Count(ev.Items, "item") + ")"
		}
		fmt.Fprintf(w, "background update %s: done in %s%s\n", ev.Update, ms(ev.Millis), items)
	case "aborted":
		fmt.Fprintf(w, "Synapse logged \"5 back-to-back background update failures; aborting.\" (update %s)\n", ev.Update)
	case "stopping":
		fmt.Fprintf(w, "stopping update_synapse_database: %s\n", ev.Error)
	}
}

// workOf renders an update's items done, total and ETA.
func workOf(ev synapse.Event) string {
	switch {
	case ev.Total > 0 && ev.ETAMillis > 0:
		return fmt.Sprintf(", %d/%d items (%d%%), about %s left", ev.Done, ev.Total, 100*ev.Done/ev.Total, ms(ev.ETAMillis))
	case ev.Total > 0:
		return fmt.Sprintf(", %d/%d items (%d%%)", ev.Done, ev.Total, 100*ev.Done/ev.Total)
	case ev.Done > 0:
		return fmt.Sprintf(", %d items", ev.Done)
	}
	return ""
}

func (s *synapseReporter) finishBar() {
	if s.bar != nil {
		_ = s.bar.Finish()
		fmt.Fprintln(s.g.stderr)
		s.bar = nil
	}
}

func (s *synapseReporter) result(res *synapse.UpgradeResult, dryRun, background bool, configArg string) {
	run := res.Run
	if s.g.json {
		ev := map[string]any{"event": "result", "ran": run != nil, "dry_run": dryRun}
		if run != nil {
			ev["run"] = run
		}
		s.r.jsonl.Emit(ev)
		return
	}
	w := s.g.stdout
	if dryRun {
		fmt.Fprintln(w, "nothing was changed (--dry-run)")
		return
	}
	if run == nil {
		fmt.Fprintln(w, "nothing to do: the schema is the release's and no background update is to run")
		return
	}
	for _, st := range run.After {
		fmt.Fprintf(w, "%s: schema %d (compat %d), %d background update(s) pending\n", descOf(res.Plan, st.Label), st.Schema, st.Compat, len(st.Pending))
	}
	if run.Failure == nil {
		fmt.Fprintf(w, "done in %s: %d delta(s) applied, %d background update(s) run\n", ms(run.Millis), len(run.Deltas), len(run.Updates))
		if !background {
			pending := 0
			for _, st := range run.After {
				pending += len(st.Pending)
			}
			if pending > 0 {
				fmt.Fprintf(w, "Synapse runs the pending background updates when it starts; to run them now:\n  update_database --database-config %s --python %s --run-background-updates\n", configArg, res.Plan.Release.Python)
			}
		}
	}
}

func descOf(p *synapse.UpgradePlan, label string) string {
	for _, d := range p.Databases {
		if d.Label == label {
			return d.Desc
		}
	}
	return label
}
