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
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-20s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("database", "%s (%s: %s)", s.Database, s.Label, strings.Join(s.Stores, ", "))
	switch s.Kind {
	case "missing":
		row("owner", "none: the file does not exist")
		return
	case "empty":
		row("owner", "none: the database is empty")
		row("next", "update_database --database-config %s creates it at schema %d", configArg, engine.Schema().Version)
		return
	case "unknown":
		row("owner", "unknown: it holds tables but no homeserver bookkeeping (schema_version)")
		return
	case "synapse":
		row("owner", "Synapse (not created by hsops: update_database will not change its schema)")
	case "engine":
		row("owner", "hsops engine (created at schema %d on %s)", s.CreatedVersion, s.CreatedAt)
	}
	how := "created from the snapshot of this version"
	switch {
	case s.RolledBackFrom > 0:
		how = fmt.Sprintf("rolled back from %d on %s", s.RolledBackFrom, s.RolledBackAt)
	case s.Upgraded:
		how = "reached by upgrade"
	}
	row("schema version", "%d (%s)", s.Schema, how)
	if s.Compat != nil {
		row("compat version", "%d", *s.Compat)
	} else {
		row("compat version", "none (written by releases before v1.37.0)")
	}
	if len(s.Matching) > 0 && s.MatchingBySchemaOnly {
		row("matching releases", "none with both versions; %s by schema version (their compat version differs)", seriesX(s.Matching))
	} else if len(s.Matching) > 0 {
		row("matching releases", "%s", seriesX(s.Matching))
	} else {
		row("matching releases", "none: no Synapse release has schema %d", s.Schema)
	}
	if s.OldestUsable != "" {
		row("usable by", "%s and later", s.OldestUsable)
	} else {
		row("usable by", "no release up to v1.98: its compat version is newer than every release known")
	}
	applied := fmt.Sprint(s.Applied)
	if s.NewestApplied != "" {
		applied += " (newest: " + s.NewestApplied + ")"
	}
	row("applied deltas", "%s", applied)
	switch {
	case s.Kind == "synapse":
		row("pending deltas", "not known to hsops: Synapse applies its own when it starts")
	case s.Problem != "":
		row("pending deltas", "cannot plan: %s", s.Problem)
	case s.Note != "":
		row("pending deltas", "none: %s", s.Note)
	case len(s.PendingDeltas) == 0:
		row("pending deltas", "none (up to date)")
	default:
		row("pending deltas", "%d up to schema %d: run update_database --database-config %s", len(s.PendingDeltas), s.PendingTarget, configArg)
		for _, d := range s.PendingDeltas {
			fmt.Fprintf(w, "%-20s   %s\n", "", d)
		}
	}
	if len(s.Updates) == 0 {
		row("background updates", "none pending")
		return
	}
	row("background updates", "%d pending", len(s.Updates))
	for _, u := range s.Updates {
		dep := ""
		if u.DependsOn != "" {
			dep = ", after " + u.DependsOn
		}
		work := ""
		if wk, ok := s.Work[u.Name]; ok && wk.Total > 0 {
			work = fmt.Sprintf(", %d/%d items done (%d%%)", wk.Done, wk.Total, 100*wk.Done/wk.Total)
		}
		fmt.Fprintf(w, "%-20s   %s (ordering %d%s) progress %s%s\n", "", u.Name, u.Ordering, dep, u.Progress, work)
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
