package status

import (
	"fmt"
	"io"
	"strings"

	"hsops/schema/engine"
)

// Format prints the status for people, one "key: value" row per line;
// configArg names the config in the commands it suggests.
func (s Database) Format(w io.Writer, configArg string) {
	r := rows{w}
	r.row("database", "%s (%s: %s)", s.Database, s.Label, strings.Join(s.Stores, ", "))
	if !s.formatOwner(r, configArg) {
		return
	}
	s.formatVersions(r)
	s.formatDeltas(r, configArg)
	s.formatUpdates(r)
}

// rows writes "key: value" rows, and the lines that go on a row's list.
type rows struct{ w io.Writer }

func (r rows) row(k, format string, args ...any) {
	fmt.Fprintf(r.w, "%-20s %s\n", k+":", fmt.Sprintf(format, args...))
}

func (r rows) more(format string, args ...any) {
	fmt.Fprintf(r.w, "%-20s   %s\n", "", fmt.Sprintf(format, args...))
}

// formatOwner says whose the database is, and reports whether it holds a
// homeserver schema to say more about.
func (s Database) formatOwner(r rows, configArg string) bool {
	switch s.Kind {
	case "missing":
		r.row("owner", "none: the file does not exist")
		return false
	case "empty":
		r.row("owner", "none: the database is empty")
		r.row("next", "update_database --database-config %s creates it at schema %d", configArg, engine.Schema().Version)
		return false
	case "unknown":
		r.row("owner", "unknown: it holds tables but no homeserver bookkeeping (schema_version)")
		return false
	case "synapse":
		r.row("owner", "Synapse (not created by hsops: update_database will not change its schema)")
	case "engine":
		r.row("owner", "hsops engine (created at schema %d on %s)", s.CreatedVersion, s.CreatedAt)
	}
	return true
}

// formatVersions shows the schema and compat versions, and the releases
// they match and that can use the database.
func (s Database) formatVersions(r rows) {
	how := "created from the snapshot of this version"
	switch {
	case s.RolledBackFrom > 0:
		how = fmt.Sprintf("rolled back from %d on %s", s.RolledBackFrom, s.RolledBackAt)
	case s.Upgraded:
		how = "reached by upgrade"
	}
	r.row("schema version", "%d (%s)", s.Schema, how)
	if s.Compat != nil {
		r.row("compat version", "%d", *s.Compat)
	} else {
		r.row("compat version", "none (written by releases before v1.37.0)")
	}
	switch {
	case len(s.Matching) > 0 && s.MatchingBySchemaOnly:
		r.row("matching releases", "none with both versions; %s by schema version (their compat version differs)", seriesX(s.Matching))
	case len(s.Matching) > 0:
		r.row("matching releases", "%s", seriesX(s.Matching))
	default:
		r.row("matching releases", "none: no Synapse release has schema %d", s.Schema)
	}
	if s.OldestUsable != "" {
		r.row("usable by", "%s and later", s.OldestUsable)
	} else {
		r.row("usable by", "no release up to v1.98: its compat version is newer than every release known")
	}
}

// formatDeltas shows the deltas applied and those to apply.
func (s Database) formatDeltas(r rows, configArg string) {
	applied := fmt.Sprint(s.Applied)
	if s.NewestApplied != "" {
		applied += " (newest: " + s.NewestApplied + ")"
	}
	r.row("applied deltas", "%s", applied)
	switch {
	case s.Kind == "synapse":
		r.row("pending deltas", "not known to hsops: Synapse applies its own when it starts")
	case s.Problem != "":
		r.row("pending deltas", "cannot plan: %s", s.Problem)
	case s.Note != "":
		r.row("pending deltas", "none: %s", s.Note)
	case len(s.PendingDeltas) == 0:
		r.row("pending deltas", "none (up to date)")
	default:
		r.row("pending deltas", "%d up to schema %d: run update_database --database-config %s", len(s.PendingDeltas), s.PendingTarget, configArg)
		for _, d := range s.PendingDeltas {
			r.more("%s", d)
		}
	}
}

// formatUpdates lists the pending background updates, with their work
// where it is known.
func (s Database) formatUpdates(r rows) {
	if len(s.Updates) == 0 {
		r.row("background updates", "none pending")
		return
	}
	r.row("background updates", "%d pending", len(s.Updates))
	for _, u := range s.Updates {
		dep := ""
		if u.DependsOn != "" {
			dep = ", after " + u.DependsOn
		}
		work := ""
		if wk, ok := s.Work[u.Name]; ok && wk.Total > 0 {
			work = fmt.Sprintf(", %d/%d items done (%d%%)", wk.Done, wk.Total, 100*wk.Done/wk.Total)
		}
		r.more("%s (ordering %d%s) progress %s%s", u.Name, u.Ordering, dep, u.Progress, work)
	}
}

// seriesX renders release tags as minor series: v1.98.0 -> "v1.98.x",
// several -> "v1.70.x-v1.76.x".
func seriesX(tags []string) string {
	x := func(t string) string { return strings.TrimSuffix(t, ".0") + ".x" }
	if len(tags) == 1 {
		return x(tags[0])
	}
	return x(tags[0]) + "-" + x(tags[len(tags)-1])
}
