package main

import (
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"

	"hsops/internal/cli"
	"hsops/internal/plural"
	"hsops/schema"
)

// reporter decides how progress is shown: JSON lines with --json, progress
// bars on a terminal, otherwise plain lines (at most one every few seconds
// per update).
type reporter struct {
	g     *globals
	jsonl *cli.JSONLines
	tty   bool

	bar       *progressbar.ProgressBar
	barUpdate string
	lastLine  time.Time
}

func newReporter(g *globals) *reporter {
	return &reporter{g: g, jsonl: cli.NewJSONLines(g.stdout), tty: cli.IsTerminal(g.stderr)}
}

// line prints a human line (not in --json mode).
func (r *reporter) line(format string, args ...any) {
	if !r.g.json {
		fmt.Fprintf(r.g.stdout, format+"\n", args...)
	}
}

// emit prints a JSON event (only in --json mode).
func (r *reporter) emit(v any) {
	if r.g.json {
		r.jsonl.Emit(v)
	}
}

func (r *reporter) schemaEvent(ev schema.Event) {
	if r.g.json {
		r.jsonl.Emit(ev)
		return
	}
	if !r.g.verbose {
		return
	}
	switch ev.Type {
	case "snapshot":
		fmt.Fprintf(r.g.stdout, "created from the schema %d snapshot (%d ms)\n", ev.Version, ev.Millis)
	case "version":
		fmt.Fprintf(r.g.stdout, "applying schema deltas for v%d\n", ev.Version)
	case "delta":
		fmt.Fprintf(r.g.stdout, "  %d/%s (%d ms)\n", ev.Version, ev.File, ev.Millis)
	}
}

func (r *reporter) schemaResult(desc string, res *schema.Result) {
	p := res.Plan
	r.emit(map[string]any{"event": "result", "database": desc, "created": p.Create, "from": p.State.Version,
		"version": res.Version, "applied": res.Applied, "ms": res.Duration.Milliseconds()})
	switch {
	case p.Create && len(p.Steps) == 0:
		r.line("%s: created at schema %d in %s", desc, res.Version, round(res.Duration))
	case p.Create:
		r.line("%s: created at schema %d and upgraded to %d (%s) in %s", desc, p.Snapshot, res.Version, plural.Count(len(res.Applied), "delta"), round(res.Duration))
	default:
		r.line("%s: upgraded from schema %d to %d (%s in %s) in %s", desc, p.State.Version, res.Version, plural.Count(len(res.Applied), "delta"), plural.Count(len(p.Steps), "version"), round(res.Duration))
	}
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// updateEvent shows background-update progress.
func (r *reporter) updateEvent(ev schema.UpdateEvent) {
	if r.g.json {
		r.jsonl.Emit(ev)
		return
	}
	if r.tty {
		r.barEvent(ev)
		return
	}
	switch ev.Type {
	case "start":
		r.lastLine = time.Now()
		if ev.Left > 0 {
			fmt.Fprintf(r.g.stdout, "running background update %s (%d items to do)\n", ev.Update, ev.Left)
		} else {
			fmt.Fprintf(r.g.stdout, "running background update %s\n", ev.Update)
		}
	case "batch":
		if time.Since(r.lastLine) >= 3*time.Second || r.g.verbose {
			r.lastLine = time.Now()
			fmt.Fprintf(r.g.stdout, "  %s: %d items done (batch of %d in %.0f ms, %.1f items/ms)\n", ev.Update, ev.Done, ev.BatchSize, ev.Millis, ev.Rate)
		}
	case "done":
		fmt.Fprintf(r.g.stdout, "  %s: done (%d items)\n", ev.Update, ev.Done)
	}
}

func (r *reporter) barEvent(ev schema.UpdateEvent) {
	switch ev.Type {
	case "start":
		max := ev.Left
		if max <= 0 {
			max = -1
		}
		r.barUpdate = ev.Update
		r.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(r.g.stderr),
			progressbar.OptionSetDescription(ev.Update),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("items"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(),
		)
	case "batch":
		if r.bar != nil && r.barUpdate == ev.Update {
			_ = r.bar.Add(ev.Items)
		}
	case "done", "failed":
		if r.bar != nil {
			_ = r.bar.Finish()
			fmt.Fprintln(r.g.stderr)
			r.bar = nil
		}
	}
}
