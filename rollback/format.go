package rollback

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"hsops/internal/plural"
	"hsops/internal/releases"
)

// Format prints the rollback for people: its plan, or that the release
// accepts the database as it is. Its output is stable (golden files).
func (p *Prepared) Format(w io.Writer) {
	switch {
	case p.AsIs != nil:
		st := p.State
		fmt.Fprintf(w, "%s: v%s (schema %d) accepts the database as it is (schema %d, compat %d): nothing to change; install v%s and start it\n",
			p.Database, p.AsIs.Release, p.AsIs.Fact.Schema, st.Version, st.Compat, p.AsIs.Release)
	case p.Synapse != nil:
		formatSynapsePlan(w, p.Database, p.Synapse, p.Backup, p.BackupDatabase)
	default:
		formatPlan(w, p.Database, p.Plan, p.Backup, p.BackupDatabase, p.AllowDataLoss)
	}
}

// JSON is the rollback as one JSON object (an event "rollback_plan", or
// "result" when the release accepts the database as it is).
func (p *Prepared) JSON() map[string]any {
	switch {
	case p.AsIs != nil:
		st := p.State
		return map[string]any{"event": "result", "database": p.Database, "version": st.Version, "compat": st.Compat, "release": "v" + p.AsIs.Release.String(), "as_is": true}
	case p.Synapse != nil:
		return map[string]any{"event": "rollback_plan", "database": p.Database, "kind": "synapse", "from": p.State.Version,
			"release": "v" + p.ToRelease.String(), "release_schema": p.Synapse.Fact.Schema, "as_is": p.Synapse.AsIs, "recipes": p.Synapse.Recipes, "advice": p.Synapse.Advice,
			"dry_run": p.DryRun, "backup": p.Backup, "backup_database": p.BackupDatabase}
	}
	return planJSON(p.Database, p.Plan, p.DryRun, p.Backup)
}

// formatPlan prints an engine database's rollback plan.
func formatPlan(w io.Writer, desc string, p *Plan, backup, backupDB string, allowLoss bool) {
	fmt.Fprintf(w, "rollback plan for %s (%s, %s):\n", desc, p.Engine, strings.Join(p.Stores, ", "))
	fmt.Fprintf(w, "  the database is at schema %d (compat %d); %s\n", p.From, p.State.Compat, AcceptedBy(p.From, p.State.Compat))
	if p.Empty() {
		fmt.Fprintf(w, "  %s\n", p.Note)
		return
	}
	fmt.Fprintf(w, "  target: schema %d (compat %d); %s\n", p.Target, p.CompatAfter, AcceptedBy(p.Target, p.CompatAfter))
	for _, s := range p.Steps {
		fmt.Fprintf(w, "  undo schema %d:\n", s.Version)
		for _, r := range s.Reverses {
			kind := ""
			if r.Go != nil {
				kind = " (Go)"
			}
			fmt.Fprintf(w, "    %s%s\n      %s\n", r.Path, kind, r.Summary)
		}
	}
	created := ""
	if !p.UpgradedAfter {
		created = fmt.Sprintf("; it counts as created at schema %d", p.CreatedAfter)
	}
	fmt.Fprintf(w, "  bookkeeping: schema_version %d -> %d, schema_compat_version %d -> %d, %s removed%s\n",
		p.From, p.Target, p.State.Compat, p.CompatAfter, plural.Count(len(p.RemoveApplied), "applied_schema_deltas row"), created)
	if len(p.Dequeued) > 0 {
		fmt.Fprintf(w, "  background updates removed: %s\n", strings.Join(p.Dequeued, ", "))
	}
	if len(p.Requeued) > 0 {
		fmt.Fprintf(w, "  background updates queued again: %s\n", strings.Join(p.Requeued, ", "))
	}
	verdict := "refused unless --allow-data-loss"
	if allowLoss {
		verdict = "the loss is allowed (--allow-data-loss)"
	}
	if lost := p.Lost(); len(lost) > 0 {
		fmt.Fprintf(w, "  data lost (%s):\n", verdict)
		for _, c := range lost {
			fmt.Fprintf(w, "    %s: %s (%s)\n", c.String(), countText(c), c.Why)
		}
	}
	if empty := p.NothingLost(); len(empty) > 0 {
		fmt.Fprintf(w, "  nothing to lose: these are empty here: %s\n", joinData(empty))
	}
	for _, i := range p.Irreversible {
		if !i.Loses() {
			fmt.Fprintf(w, "  cannot be undone, but nothing to lose here (%s holds no rows): %s: %s\n", i.Affects.String(), i.Delta, i.Why)
			continue
		}
		affected := ""
		if i.Affects != nil {
			affected = fmt.Sprintf(" (%s: %s)", i.Affects.String(), countText(*i.Affects))
		}
		fmt.Fprintf(w, "  cannot be undone (%s): %s: %s%s\n", verdict, i.Delta, i.Why, affected)
	}
	var dropped []string
	for _, c := range p.Drops {
		if c.Rows > 0 {
			dropped = append(dropped, fmt.Sprintf("%s (%s)", c.String(), countText(c)))
		}
	}
	if len(dropped) > 0 {
		fmt.Fprintf(w, "  derived data dropped: %s\n", strings.Join(dropped, ", "))
	}
	if len(p.Keeps) > 0 {
		fmt.Fprintf(w, "  derived values kept: %s\n", joinData(p.Keeps))
	}
	if len(p.Restores) > 0 {
		fmt.Fprintf(w, "  tables recreated empty: %s\n", joinData(p.Restores))
	}
	formatBackup(w, backup, backupDB)
	if len(p.Lost()) > 0 || len(p.Unrecoverable()) > 0 {
		fmt.Fprintf(w, "  %s in %s, in one transaction; %s\n", plural.Count(p.ReverseCount(), "reverse"), plural.Count(len(p.Steps), "version"), verdict)
	} else {
		fmt.Fprintf(w, "  %s in %s, in one transaction; nothing to lose\n", plural.Count(p.ReverseCount(), "reverse"), plural.Count(len(p.Steps), "version"))
	}
}

func countText(c Count) string {
	switch {
	case c.Rows < 0:
		return "not present"
	case c.Kind == "column":
		return plural.Count(c.Rows, "value")
	}
	return plural.Count(c.Rows, "row")
}

func joinData(cs []Count) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return strings.Join(out, ", ")
}

// AcceptedBy says which Synapse releases accept a database at a schema
// and compat version.
func AcceptedBy(version, compat int) string {
	f, ok := releases.OldestCanRun(version, compat)
	if !ok {
		return "no known Synapse release accepts it"
	}
	return fmt.Sprintf("Synapse %s and later accept it", f.Tag())
}

func planJSON(desc string, p *Plan, dryRun bool, backup string) map[string]any {
	type step struct {
		Version  int      `json:"version"`
		Reverses []string `json:"reverses"`
	}
	steps := []step{}
	for _, s := range p.Steps {
		st := step{Version: s.Version, Reverses: []string{}}
		for _, r := range s.Reverses {
			st.Reverses = append(st.Reverses, r.Path)
		}
		steps = append(steps, st)
	}
	out := map[string]any{
		"event": "rollback_plan", "database": desc, "engine": p.Engine, "from": p.From, "target": p.Target,
		"compat_after": p.CompatAfter, "steps": steps, "remove_applied": nonNil(p.RemoveApplied),
		"dequeued": nonNil(p.Dequeued), "requeued": nonNil(p.Requeued),
		"loses": p.Loses, "drops": p.Drops, "keeps": p.Keeps, "restores_empty": p.Restores,
		"irreversible": p.Irreversible, "refused": p.Refusal() != nil, "dry_run": dryRun,
	}
	if backup != "" {
		out["backup"] = backup
	}
	if p.Note != "" {
		out["note"] = p.Note
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// formatBackup says which copy of the database is made before a rollback.
func formatBackup(w io.Writer, backup, backupDB string) {
	switch {
	case backup != "":
		fmt.Fprintf(w, "  first, a copy of the database: %s\n", filepath.Base(backup))
	case backupDB != "":
		fmt.Fprintf(w, "  first, a copy of the database: PostgreSQL database %s (CREATE DATABASE ... TEMPLATE)\n", backupDB)
	default:
		fmt.Fprintln(w, "  no copy is made (--no-backup)")
	}
}

// formatSynapsePlan prints the rollback of a Synapse database.
func formatSynapsePlan(w io.Writer, desc string, p *SynapsePlan, backup, backupDB string) {
	compat := "none"
	if p.State.HasCompat {
		compat = fmt.Sprint(p.State.Compat)
	}
	fmt.Fprintf(w, "rollback plan for %s (Synapse database at schema %d, compat %s):\n", desc, p.State.Version, compat)
	fmt.Fprintf(w, "  target: v%s (schema %d)\n", p.Release, p.Fact.Schema)
	if p.AsIs {
		fmt.Fprintf(w, "  v%s accepts the database as it is: nothing to change; install it and start it\n", p.Release)
	}
	for _, r := range p.Recipes {
		fmt.Fprintf(w, "  recipe %q (%s):\n", r.Name, r.URL())
		for _, s := range r.Steps {
			fmt.Fprintf(w, "    %s:\n", s.Say)
			for _, stmt := range s.Statements(p.Engine) {
				fmt.Fprintf(w, "      %s\n", stmt)
			}
		}
	}
	if len(p.Recipes) > 0 {
		formatBackup(w, backup, backupDB)
		fmt.Fprintln(w, "  all statements run in one transaction")
	}
	for _, r := range append(append([]Recipe{}, p.Recipes...), p.Advice...) {
		for _, a := range r.Advice {
			fmt.Fprintf(w, "  advice (%s): %s\n", r.Name, a)
		}
	}
}
