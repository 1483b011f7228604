package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/fault"
	"hsops/internal/plural"
	"hsops/internal/rehearse"
)

type rehearseOptions struct {
	*globals
	toSchema   int
	toRelease  string
	python     string
	keep       bool
	junit      string
	scratchDir string
	jobs       int
	verify     bool
	snapshot   bool
	clean      bool
}

func newRehearseCmd(g *globals) *cobra.Command {
	o := &rehearseOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "rehearse --database-config homeserver.yaml [--to-schema N | --to-release X] [--python PY] [--keep] [--json] [--junit FILE]",
		Short: "Run the upgrade for real on a scratch copy of the live database, and report its downtime, its background work and what fails",
		Long: `rehearse copies the database while the homeserver keeps running on it (SQLite:
the online backup API; PostgreSQL: CREATE DATABASE ... TEMPLATE when nothing
is connected, else a copy from one exported snapshot), upgrades the copy for
real, and reports each step: the schema deltas (the blocking phase, the
downtime the homeserver's start-up will take), then every background update
(the background phase, which runs while it serves), the rows of every table
before and after, and upgrade-check's database checks on the result. The
copy is dropped at the end (--keep keeps it); the original is never written.

An hsops engine database is upgraded to --to-schema N or the schema of
--to-release X (default: the newest). A Synapse database is upgraded by the
Synapse release to rehearse: --python names its Python, whose
update_synapse_database --run-background-updates runs on the copy; a
failing delta or background update is named with its fix, and Synapse's hang
after five failed attempts is detected and stopped.

A killed rehearsal leaves at most its copy (hsops-rehearse-* next to a
SQLite database, database hsops_rehearse_* on PostgreSQL), which the next
rehearse of the database removes, as does rehearse --clean (kept copies too).

Exit: 0 the upgrade passed on the copy, 2 it failed (or a check found a
blocker); other codes are errors (see update_database --help).`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRehearse(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.toSchema, "to-schema", 0, "engine databases: the schema version to upgrade to (default: the newest)")
	f.StringVar(&o.toRelease, "to-release", "", "the release to upgrade to (engine: its schema version; Synapse: must be the release at --python)")
	f.StringVar(&o.python, "python", "", "Synapse databases: the Python interpreter of the Synapse release to rehearse")
	f.BoolVar(&o.keep, "keep", false, "keep the upgraded copy (renamed hsops-rehearsed-*; rehearse --clean removes it)")
	f.StringVar(&o.junit, "junit", "", "also write a JUnit XML report to this file (a test case per delta and per background update)")
	f.StringVar(&o.scratchDir, "scratch-dir", "", "SQLite: the directory for the copy (default: the database's own directory)")
	f.IntVar(&o.jobs, "jobs", 4, "PostgreSQL snapshot copy: tables copied at once")
	f.BoolVar(&o.verify, "verify-copy", false, "PostgreSQL snapshot copy: compare every table with the source at the snapshot (reads the source twice)")
	f.BoolVar(&o.snapshot, "snapshot-copy", false, "PostgreSQL: copy from a snapshot even when nothing is connected (the template copy makes new connections to the source wait)")
	f.BoolVar(&o.clean, "clean", false, "remove the scratch copies of earlier rehearsals (kept ones too) and exit")
	return cmd
}

func runRehearse(ctx context.Context, o *rehearseOptions) error {
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	if o.clean {
		removed, busy, err := rehearse.Clean(ctx, cfg, o.scratchDir)
		for _, r := range removed {
			o.say("removed %s", r)
		}
		for _, b := range busy {
			o.say("left %s: a running rehearsal uses it", b)
		}
		if err == nil && len(removed) == 0 && len(busy) == 0 {
			o.say("no scratch copy to remove")
		}
		if o.json {
			cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "clean", "removed": orEmpty(removed), "in_use": orEmpty(busy)})
		}
		return err
	}
	out := newRehearseReporter(o)
	opts := rehearse.Options{
		Config: cfg, ConfigArg: o.configArg(), ToSchema: o.toSchema, ToRelease: o.toRelease, Python: o.python,
		Keep: o.keep, ScratchDir: o.scratchDir, Jobs: o.jobs, VerifyCopy: o.verify, ForceSnapshot: o.snapshot,
		OnEvent: out.event,
	}
	if o.verbose && !o.json {
		opts.SynapseLog = prefixWriter{w: o.stderr, prefix: "synapse: "}
	}
	rep, err := rehearse.Run(ctx, opts)
	out.done()
	if rep == nil {
		return err
	}
	if o.junit != "" {
		data, jerr := rep.JUnit()
		if jerr == nil {
			jerr = os.WriteFile(o.junit, data, 0o644)
		}
		if jerr != nil {
			return fault.Wrap(fault.Usage, fmt.Errorf("write the JUnit report: %w", jerr), "--junit must name a file in a directory this user can write")
		}
	}
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "rehearsal", "report": rep})
	} else {
		printRehearsal(o.stdout, rep, o.verbose)
	}
	return err
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// say prints a human line (not in --json mode).
func (g *globals) say(format string, args ...any) {
	if !g.json {
		fmt.Fprintf(g.stdout, format+"\n", args...)
	}
}

// prefixWriter prefixes each line (Synapse's output under -v).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			fmt.Fprint(p.w, p.prefix+l)
		}
	}
	return len(b), nil
}

// rehearseReporter shows progress: JSON lines with --json, bars on a
// terminal, else a line per step (deltas with -v).
type rehearseReporter struct {
	o     *rehearseOptions
	jsonl *cli.JSONLines
	tty   bool
	bar   *progressbar.ProgressBar
	last  time.Time
}

func newRehearseReporter(o *rehearseOptions) *rehearseReporter {
	return &rehearseReporter{o: o, jsonl: cli.NewJSONLines(o.stdout), tty: cli.IsTerminal(o.stderr)}
}

func (r *rehearseReporter) event(ev rehearse.Event) {
	if r.o.json {
		r.jsonl.Emit(ev)
		return
	}
	w := r.o.stderr
	switch ev.Type {
	case "copy_start":
		if r.tty {
			r.bar = progressbar.NewOptions64(max(ev.Total, 1), progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("copy "+ev.Database),
				progressbar.OptionShowBytes(true), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
		} else {
			fmt.Fprintf(w, "copying %s to %s\n", ev.Database, ev.Name)
		}
		r.last = time.Now()
	case "copy_progress":
		if r.bar != nil {
			if ev.Total > r.bar.GetMax64() {
				r.bar.ChangeMax64(ev.Total)
			}
			_ = r.bar.Set64(ev.Done)
		} else if time.Since(r.last) > 5*time.Second {
			r.last = time.Now()
			fmt.Fprintf(w, "  copied %s of about %s\n", size(ev.Done), size(ev.Total))
		}
	case "copy_done":
		r.finishBar()
		fmt.Fprintf(w, "copied %s (%s, %s) in %s\n", ev.Database, ev.Method, size(ev.Done), ms(ev.Millis))
	case "phase":
		if ev.Name == "schema" {
			fmt.Fprintln(w, "upgrading the copy: schema deltas")
		} else {
			fmt.Fprintln(w, "upgrading the copy: background updates")
		}
	case "delta":
		if r.o.verbose {
			fmt.Fprintf(w, "  %s\n", ev.Name)
		}
	case "update_start":
		r.finishBar()
		if r.tty {
			total := ev.Total
			if total <= 0 {
				total = -1 // a spinner
			}
			r.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(ev.Name),
				progressbar.OptionShowCount(), progressbar.OptionSetItsString("items"), progressbar.OptionShowIts(), progressbar.OptionThrottle(100*time.Millisecond))
		} else {
			fmt.Fprintf(w, "  %s\n", ev.Name)
		}
	case "update_batch":
		if r.bar != nil {
			_ = r.bar.Add64(ev.Rows)
		}
	case "update_done", "update_failed":
		r.finishBar()
		if ev.Type == "update_failed" {
			fmt.Fprintf(w, "  %s failed: %s\n", ev.Name, ev.Message)
		}
	case "note":
		if ev.Name == "" || r.o.verbose {
			fmt.Fprintf(w, "note: %s\n", ev.Message)
		}
	}
}

func (r *rehearseReporter) finishBar() {
	if r.bar != nil {
		_ = r.bar.Finish()
		fmt.Fprintln(r.o.stderr)
		r.bar = nil
	}
}

func (r *rehearseReporter) done() { r.finishBar() }

func ms(n int64) string {
	if n < 0 {
		return "?"
	}
	return round(time.Duration(n) * time.Millisecond).String()
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

var copyMethod = map[string]string{
	"backup":   "SQLite online backup",
	"locked":   "file copy under SQLite's read lock",
	"template": "CREATE DATABASE ... TEMPLATE",
	"snapshot": "COPY from one exported snapshot",
}

// printRehearsal prints the report for people.
func printRehearsal(w io.Writer, rep *rehearse.Report, verbose bool) {
	if rep.Nothing != "" {
		fmt.Fprintf(w, "nothing to rehearse: %s\n", rep.Nothing)
		return
	}
	kind := "hsops engine database"
	if rep.Kind == "synapse" {
		kind = "Synapse database, upgraded by Synapse " + rep.Release
	}
	for _, c := range rep.Cleaned {
		fmt.Fprintf(w, "removed the stale scratch copy %s\n", c)
	}
	for _, d := range rep.Databases {
		fmt.Fprintf(w, "rehearsal of %s (%s): schema %d (compat %d) -> %d (compat %d)\n", d.Source, kind, d.Before.Schema, d.Before.Compat, d.After.Schema, d.After.Compat)
		c := d.Copy
		line := fmt.Sprintf("  copy: %s, %s in %s", copyMethod[c.Method], size(c.Bytes), ms(c.Millis))
		if c.Tables > 0 {
			line += fmt.Sprintf(" (%d tables, %d rows; data %s, keys and indexes %s", c.Tables, c.Rows, ms(c.DataMillis), ms(c.RebuildMillis))
			if c.Verified {
				line += ", every table checked against the source"
			}
			line += ")"
		}
		fmt.Fprintln(w, line)

		fmt.Fprintf(w, "  schema deltas (the homeserver waits for them at start-up): %d\n", len(d.Deltas))
		deltas := d.Deltas
		if !verbose && len(deltas) > 8 {
			deltas = slowest(deltas, 5)
			fmt.Fprintf(w, "    (the 5 slowest and any that failed; -v lists all %d)\n", len(d.Deltas))
		}
		for _, s := range deltas {
			fmt.Fprintln(w, "    "+stepLine(s, "rows"))
		}
		fmt.Fprintf(w, "  background updates (they run while the homeserver serves): %d\n", len(d.Updates))
		for _, s := range d.Updates {
			fmt.Fprintln(w, "    "+stepLine(s, "items"))
		}
		var changed []rehearse.TableCount
		for _, t := range d.Tables {
			if t.Before != t.After {
				changed = append(changed, t)
			}
		}
		fmt.Fprintf(w, "  tables: %d; %d changed in row count\n", len(d.Tables), len(changed))
		for _, t := range changed {
			fmt.Fprintf(w, "    %-40s %s -> %s\n", t.Table, count(t.Before, "(new)"), count(t.After, "(dropped)"))
		}
		fmt.Fprintln(w, "  checks of the upgraded copy:")
		for _, f := range d.Checks {
			fmt.Fprintf(w, "    %-8s %s: %s\n", f.Status.Label(), f.Note.Title, f.Detail)
		}
		if c.Kept != "" {
			fmt.Fprintf(w, "  the upgraded copy is kept: %s\n", c.Kept)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "predicted downtime: %s (the schema deltas)\n", ms(rep.BlockingMillis))
	fmt.Fprintf(w, "background work: %s flat out in %s; about %s at the homeserver's pace\n", ms(rep.BackgroundMillis), plural.Irregular(rep.Batches, "batch", "batches"), ms(rep.PacedMillis))
	if f := rep.Failure; f != nil {
		fmt.Fprintf(w, "result: FAILED at %s %s\n", f.Phase, f.Step)
	} else {
		fmt.Fprintln(w, "result: passed")
	}
	kept := false
	for _, d := range rep.Databases {
		kept = kept || d.Copy.Kept != ""
	}
	if !kept {
		fmt.Fprintln(w, "the scratch copy was removed; the original database was not written")
	} else {
		fmt.Fprintln(w, "the original database was not written")
	}
}

// slowest keeps the n slowest steps and every failed one, in their order.
func slowest(steps []rehearse.Step, n int) []rehearse.Step {
	byTime := append([]rehearse.Step(nil), steps...)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].Millis > byTime[j].Millis })
	keep := map[string]bool{}
	for i := 0; i < n && i < len(byTime); i++ {
		keep[byTime[i].Name] = true
	}
	var out []rehearse.Step
	for _, s := range steps {
		if keep[s.Name] || !s.OK {
			out = append(out, s)
		}
	}
	return out
}

func count(n int64, none string) string {
	if n < 0 {
		return none
	}
	return fmt.Sprint(n)
}

func stepLine(s rehearse.Step, unit string) string {
	if !s.Ran {
		return strings.TrimRight(fmt.Sprintf("%-60s not run: %s", s.Name, s.Error), ": ")
	}
	status := "ok"
	if !s.OK {
		status = "FAILED"
	}
	line := fmt.Sprintf("%-60s %-7s %8s", s.Name, status, ms(s.Millis))
	if s.Rows >= 0 && s.Ran {
		line += fmt.Sprintf(" %8d %s", s.Rows, unit)
	}
	if s.Batches > 0 {
		line += " in " + plural.Irregular(s.Batches, "batch", "batches")
	}
	if s.Error != "" {
		line += ": " + s.Error
	}
	return strings.TrimRight(line, " ")
}
